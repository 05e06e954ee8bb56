-- Asynchronous invocation settings per function and qualifier ('$LATEST' when unqualified).
CREATE TABLE event_invoke_configs (
    function      TEXT NOT NULL,
    qualifier     TEXT NOT NULL,
    config        TEXT NOT NULL,  -- {"MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"}
    last_modified REAL NOT NULL,
    PRIMARY KEY (function, qualifier)
) STRICT;
