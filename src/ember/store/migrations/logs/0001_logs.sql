-- CloudWatch-Logs-shaped storage: groups, streams, events. Kept in its own database file so
-- log ingestion never contends with the metadata store's writers.
CREATE TABLE log_groups (
    name           TEXT    PRIMARY KEY,
    created        INTEGER NOT NULL,
    retention_days INTEGER
) STRICT;

CREATE TABLE log_streams (
    log_group      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    created        INTEGER NOT NULL,
    first_event    INTEGER,
    last_event     INTEGER,
    last_ingestion INTEGER,
    PRIMARY KEY (log_group, name)
) STRICT;

CREATE TABLE log_events (
    id         INTEGER PRIMARY KEY,
    log_group  TEXT    NOT NULL,
    log_stream TEXT    NOT NULL,
    timestamp  INTEGER NOT NULL,
    ingestion  INTEGER NOT NULL,
    message    TEXT    NOT NULL
) STRICT;

CREATE INDEX log_events_by_group_time ON log_events (log_group, timestamp, id);
CREATE INDEX log_events_by_stream ON log_events (log_group, log_stream, id);
