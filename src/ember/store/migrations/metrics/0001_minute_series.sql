-- One-minute metric series per function version (the last 24 hours are kept), written from
-- memory every few seconds so a restart keeps them. `function` = '' holds account-wide
-- figures (concurrency). Times are minutes since the epoch.
CREATE TABLE minute_series (
    function      TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    minute        INTEGER NOT NULL,
    invocations   INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    throttles     INTEGER NOT NULL DEFAULT 0,
    faults        INTEGER NOT NULL DEFAULT 0,
    cold_starts   INTEGER NOT NULL DEFAULT 0,
    duration_sum  REAL    NOT NULL DEFAULT 0,
    duration_min  REAL,
    duration_max  REAL,
    duration_n    INTEGER NOT NULL DEFAULT 0,
    init_sum      REAL    NOT NULL DEFAULT 0,
    init_n        INTEGER NOT NULL DEFAULT 0,
    concurrency   INTEGER NOT NULL DEFAULT 0,  -- max concurrent executions of the version
    function_concurrency INTEGER NOT NULL DEFAULT 0,  -- max of the function, all versions
    billed_ms     INTEGER NOT NULL DEFAULT 0,
    mb_ms         INTEGER NOT NULL DEFAULT 0,  -- sum of billed ms x memory MB (GB-seconds)
    PRIMARY KEY (function, version, minute)
) STRICT, WITHOUT ROWID;

CREATE INDEX minute_series_by_minute ON minute_series (minute);
