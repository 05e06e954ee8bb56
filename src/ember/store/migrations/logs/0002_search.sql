-- Reading like CloudWatch Logs: a stream's events in timestamp order (GetLogEvents), streams by
-- last event (DescribeLogStreams orderBy=LastEventTime), and each group's stored bytes.
ALTER TABLE log_groups ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
DROP INDEX log_events_by_stream;
CREATE INDEX log_events_by_stream_time ON log_events (log_group, log_stream, timestamp, id);
CREATE INDEX log_streams_by_last_event ON log_streams (log_group, last_event, name);
