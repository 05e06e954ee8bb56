-- Recent invocations' traces (traces.sqlite3). One row per invocation attempt holds the figures
-- its spans are built from (the invocation and its phases: queue wait, claim or cold start,
-- init, handler); span ids are derived from (request_id, received, phase). Pruned by age and count.
CREATE TABLE invocations (
    id              INTEGER PRIMARY KEY,
    trace_id        TEXT    NOT NULL,  -- 32 hex (W3C); the X-Ray root is 1-<first 8>-<last 24>
    parent_id       TEXT,              -- the caller's span, when the request named one
    request_id      TEXT    NOT NULL,
    function        TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    invocation_type TEXT    NOT NULL,
    received        REAL    NOT NULL,  -- epoch seconds the invoker got the request
    queue_wait_ms   REAL,
    acquire_ms      REAL    NOT NULL,
    init_ms         REAL,
    duration_ms     REAL    NOT NULL,
    cold            INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    error_type      TEXT
) STRICT;

CREATE INDEX invocations_by_trace ON invocations (trace_id);
CREATE INDEX invocations_by_function ON invocations (function, received);
CREATE INDEX invocations_by_received ON invocations (received);
