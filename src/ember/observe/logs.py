"""Function logs: CloudWatch-shaped groups, streams and events in their own SQLite file.

Writes never touch the invocation path: `emit` appends to an in-memory queue and a writer
thread commits batches. A failing write is counted and dropped, never raised to a caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ember.store.sqlite import connect, migrate

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024  # CloudWatch's per-event limit


@dataclass(frozen=True)
class LogEvent:
    id: int
    log_group: str
    log_stream: str
    timestamp: int  # ms since the epoch
    ingestion: int
    message: str


Batch = tuple[str, str, list[tuple[int, str]]]


class LogStore:
    def __init__(self, path: Path, flush_interval: float = 0.02) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            migrate(self._conn, "logs")
            self._conn.execute("COMMIT")
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._flush_interval = flush_interval
        self.dropped = 0
        self._idle = threading.Event()
        self._idle.set()
        self._writer = threading.Thread(target=self._run, name="ember-log-writer", daemon=True)
        self._writer.start()

    # -- writing -------------------------------------------------------------------------

    def emit(self, log_group: str, log_stream: str, events: list[tuple[int, str]]) -> None:
        """Queue events for storage (non-blocking; never raises)."""
        if events:
            self._idle.clear()
            self._queue.put((log_group, log_stream, events))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batches = [first]
            deadline = time.monotonic() + self._flush_interval
            stop = False
            while len(batches) < 2048:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batches.append(item)
            try:
                self._write(batches)
            except Exception:
                self.dropped += sum(len(b[2]) for b in batches)
                log.exception("dropping %d log batches", len(batches))
            if self._queue.empty():
                self._idle.set()
            if stop:
                return

    def _write(self, batches: list[Batch]) -> None:
        now = int(time.time() * 1000)
        rows = []
        streams: dict[tuple[str, str], tuple[int, int]] = {}
        for group, stream, events in batches:
            for ts, message in events:
                rows.append((group, stream, ts, now, message[:MAX_EVENT_BYTES]))
            first, last = min(e[0] for e in events), max(e[0] for e in events)
            if (group, stream) in streams:
                old_first, old_last = streams[(group, stream)]
                first, last = min(first, old_first), max(last, old_last)
            streams[(group, stream)] = (first, last)
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for group in {g for g, _ in streams}:
                    c.execute(
                        "INSERT INTO log_groups (name, created) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (group, now),
                    )
                for (group, stream), (first, last) in streams.items():
                    c.execute(
                        "INSERT INTO log_streams (log_group, name, created, first_event, last_event,"
                        " last_ingestion) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (log_group, name) DO"
                        " UPDATE SET first_event = MIN(COALESCE(first_event, excluded.first_event),"
                        " excluded.first_event), last_event = MAX(COALESCE(last_event, 0),"
                        " excluded.last_event), last_ingestion = excluded.last_ingestion",
                        (group, stream, now, first, last, now),
                    )
                c.executemany(
                    "INSERT INTO log_events (log_group, log_stream, timestamp, ingestion, message)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything emitted so far is stored (tests, shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=10)
        with self._lock:
            self._conn.close()

    # -- reading -------------------------------------------------------------------------

    def events(
        self,
        log_group: str,
        streams: list[str] | None = None,
        start: int | None = None,
        end: int | None = None,
        contains: str | None = None,
        after_id: int = 0,
        limit: int = 10_000,
    ) -> list[LogEvent]:
        sql = ["SELECT id, log_group, log_stream, timestamp, ingestion, message FROM log_events"
               " WHERE log_group = ? AND id > ?"]
        args: list[object] = [log_group, after_id]
        if streams:
            sql.append(f"AND log_stream IN ({', '.join('?' for _ in streams)})")
            args.extend(streams)
        if start is not None:
            sql.append("AND timestamp >= ?")
            args.append(start)
        if end is not None:
            sql.append("AND timestamp < ?")
            args.append(end)
        if contains:
            sql.append("AND instr(message, ?) > 0")
            args.append(contains)
        sql.append("ORDER BY id LIMIT ?")
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(" ".join(sql), args).fetchall()
        return [LogEvent(*row) for row in rows]

    def streams(self, log_group: str) -> list[tuple[str, int, int | None, int | None]]:
        """(name, created, first event, last event) of a group's streams, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, created, first_event, last_event FROM log_streams"
                " WHERE log_group = ? ORDER BY last_event DESC",
                (log_group,),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]
