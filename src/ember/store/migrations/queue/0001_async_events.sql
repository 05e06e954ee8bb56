-- Accepted asynchronous invocations. A row exists from the moment the 202 is promised until
-- the event has succeeded or gone down its failure path; this file is synced on every commit.
CREATE TABLE async_events (
    id          INTEGER PRIMARY KEY,
    request_id  TEXT    NOT NULL UNIQUE,
    function    TEXT    NOT NULL,
    qualifier   TEXT,
    payload     BLOB    NOT NULL,
    trace_id    TEXT,
    enqueued_at REAL    NOT NULL,  -- when it was accepted: the clock for MaximumEventAgeInSeconds
    visible_at  REAL    NOT NULL,  -- not before this time (retry back-off)
    attempts    INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Per-function counters shown by `ember queue` and exported as metrics.
CREATE TABLE async_stats (
    function  TEXT    PRIMARY KEY,
    succeeded INTEGER NOT NULL DEFAULT 0,
    retried   INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    expired   INTEGER NOT NULL DEFAULT 0
) STRICT;
