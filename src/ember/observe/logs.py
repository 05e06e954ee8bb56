"""Function logs: CloudWatch-shaped groups, streams and events in their own SQLite file.

Writes never touch the invocation path: `emit` appends to an in-memory queue; a thread batches
it and hands the batches to the writer process, which commits them and
acknowledges (`store_writer.py`; shared with traces when the platform builds it). A failing
write is counted and dropped, never raised to a caller.
Reads use their own connections (WAL lets them run beside the writer), so a long search never
holds up ingestion. Events are read in (timestamp, id) order, as CloudWatch Logs returns them;
a `Position` — the (timestamp, id) of an event — is where a page of reading stops and the next
one starts.

Each event records whether the platform wrote it (START, END, REPORT, INIT_START, the timeout
line, "[ember] …" notices) or not (the function's output, PutLogEvents): `LogEvent.platform`.
Function output can never be stored as a platform record, whatever its text.

This module knows storage and search, not AWS wire shapes (those are api/logs_api.py's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.observe.filter_pattern import FilterPattern, Prefilter
from ember.observe.store_writer import StoreWriter
from ember.store.sqlite import connect, migrate, transaction

log = logging.getLogger(__name__)


MAX_EVENT_BYTES = 256 * 1024  # CloudWatch's per-event limit
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event on top of its message
DAY_MS = 86_400_000
SEARCH_WINDOW = 100_000  # index entries one SQL scan of a search covers at most
SEARCH_CHUNK = 2_000  # rows fetched into Python at a time
SWEEP_CHUNK = 20_000  # events deleted per transaction by the retention sweep
MAX_DELIVERY = 2048  # emitted batches handed to the writer in one frame
MAX_DELIVERY_EVENTS = 50_000  # and at most this many events (bounds each frame and transaction)
WAL_LIMIT_BYTES = 8 * 1024 * 1024  # the writer's WAL is truncated to this after checkpoints

Position = tuple[int, int]  # (timestamp, id) of an event


@dataclass(frozen=True)
class LogEvent:
    id: int
    log_group: str
    log_stream: str
    timestamp: int  # ms since the epoch
    ingestion: int
    message: str
    platform: bool = False  # written by the platform (START, REPORT, ...), never by a function

    @property
    def position(self) -> Position:
        return (self.timestamp, self.id)


@dataclass(frozen=True)
class GroupInfo:
    name: str
    created: int
    retention_days: int | None
    stored_bytes: int


@dataclass(frozen=True)
class StreamInfo:
    log_group: str
    name: str
    created: int
    first_event: int | None
    last_event: int | None
    last_ingestion: int | None


@dataclass(frozen=True)
class SearchPage:
    events: list[LogEvent]
    next: Position | None  # where to go on; None when the search reached the end


# An event: (timestamp, message), or (timestamp, message, platform) where `platform` is true
# for a line the platform wrote.
Event = tuple[int, str] | tuple[int, str, bool]
Batch = tuple[int, str, str, list[Event]]  # (sequence number, group, stream, events)

_EVENT_COLUMNS = "id, log_group, log_stream, timestamp, ingestion, message, platform"


def _size(message: str) -> int:
    return len(message) if message.isascii() else len(message.encode())


def _now_ms() -> int:
    return int(time.time() * 1000)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _event(row: tuple[Any, ...]) -> LogEvent:
    return LogEvent(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))


def _chunks(batches: list[Batch]) -> Iterator[list[Batch]]:
    """Batches in deliveries of at most MAX_DELIVERY batches and (past the first batch)
    MAX_DELIVERY_EVENTS events: one delivery is one frame and one transaction."""
    chunk: list[Batch] = []
    events = 0
    for batch in batches:
        if chunk and (len(chunk) >= MAX_DELIVERY or events + len(batch[3]) > MAX_DELIVERY_EVENTS):
            yield chunk
            chunk, events = [], 0
        chunk.append(batch)
        events += len(batch[3])
    if chunk:
        yield chunk


def connect_writer(path: Path) -> sqlite3.Connection:
    """The connection that inserts events (the writer process's): its WAL is truncated back to
    WAL_LIMIT_BYTES after checkpoints, so a burst of output does not leave a large file behind."""
    conn = connect(path)
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    return conn


def write_batches(conn: sqlite3.Connection, batches: Sequence[Batch]) -> None:
    """Store batches of events in one transaction (the writer process's and put()'s work)."""
    now = _now_ms()
    rows = []
    streams: dict[tuple[str, str], tuple[int, int]] = {}
    group_bytes: dict[str, int] = {}
    for _, group, stream, events in batches:
        size = 0
        for event in events:
            text = event[1][:MAX_EVENT_BYTES]
            size += _size(text)
            rows.append(
                (group, stream, event[0], now, text, 1 if len(event) > 2 and event[2] else 0)
            )
        group_bytes[group] = group_bytes.get(group, 0) + size
        first, last = min(e[0] for e in events), max(e[0] for e in events)
        if (group, stream) in streams:
            old_first, old_last = streams[(group, stream)]
            first, last = min(first, old_first), max(last, old_last)
        streams[(group, stream)] = (first, last)
    # A COMMIT that fails (a full disk) is rolled back too, or the connection would stay in
    # its transaction and refuse every later batch.
    with transaction(conn, contextlib.nullcontext()):
        for group, size in group_bytes.items():
            conn.execute(
                "INSERT INTO log_groups (name, created, stored_bytes) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes",
                (group, now, size),
            )
        for (group, stream), (first, last) in streams.items():
            conn.execute(
                "INSERT INTO log_streams (log_group, name, created, first_event, last_event,"
                " last_ingestion) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (log_group, name) DO"
                " UPDATE SET first_event = MIN(COALESCE(first_event, excluded.first_event),"
                " excluded.first_event), last_event = MAX(COALESCE(last_event, 0),"
                " excluded.last_event), last_ingestion = excluded.last_ingestion",
                (group, stream, now, first, last, now),
            )
        conn.executemany(
            "INSERT INTO log_events (log_group, log_stream, timestamp, ingestion, message, platform)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


class LogStore:
    """Log storage. Inserts happen in a writer process (`observe/store_writer.py`) so that their
    Python work never competes with the event loop for the GIL; if that process cannot be
    started or dies, this process writes them itself (nothing sent is lost: batches not yet
    acknowledged are written again here)."""

    def __init__(
        self,
        path: Path,
        flush_interval: float = 0.02,
        writer: StoreWriter | None = None,
        writer_process: bool = True,
    ) -> None:
        self._path = path
        self._conn = connect_writer(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            migrate(self._conn, "logs")
            self._conn.execute("COMMIT")
        self._readers_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._closed = False
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._flush_interval = flush_interval
        self.dropped = 0
        self._seq = 0  # last sequence number handed out by emit()
        self._stored_seq = 0  # every batch up to this one is committed (or dropped)
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._writer = writer
        self._own_writer = False
        if writer is None and writer_process:
            self._writer = StoreWriter({"logs": path})
            self._own_writer = self._writer.start()
            if not self._own_writer:
                self._writer = None
        if self._writer is not None:
            self._writer.register("logs", self._mark_stored, self._write_here)
        self._thread = threading.Thread(target=self._run, name="ember-log-batcher", daemon=True)
        self._thread.start()

    # -- writing -------------------------------------------------------------------------

    def emit(self, log_group: str, log_stream: str, events: Sequence[Event]) -> int:
        """Queue events for storage (non-blocking; never raises). Returns a sequence number
        to pass to `stored()`."""
        if not events:
            return self._seq
        with self._waiters_lock:
            self._seq += 1
            seq = self._seq
            if self._idle.is_set():
                self._idle.clear()
        self._queue.put((seq, log_group, log_stream, list(events)))
        return seq

    async def stored(self, seq: int) -> None:
        """Wait until the batch numbered `seq` (and every earlier one) has been written."""
        if seq <= self._stored_seq:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            if seq <= self._stored_seq:
                return
            self._waiters.append((seq, loop, future))
        await future

    def _mark_stored(self, seq: int) -> None:
        with self._waiters_lock:
            self._stored_seq = max(self._stored_seq, seq)
            if self._stored_seq >= self._seq:
                self._idle.set()
            due = [w for w in self._waiters if w[0] <= self._stored_seq]
            self._waiters = [w for w in self._waiters if w[0] > self._stored_seq]
        for _, loop, future in due:
            loop.call_soon_threadsafe(_resolve, future)

    def put(self, log_group: str, log_stream: str, events: Sequence[Event]) -> None:
        """Store events now (PutLogEvents): readers see them when this returns."""
        if events:
            self._write([(0, log_group, log_stream, list(events))])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Sleep through the batching window rather than wait on the queue: a waiting thread
            # is woken by every emit() and takes the GIL from the event loop each time.
            time.sleep(self._flush_interval)
            batches = [first]
            stop = False
            while not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batches.append(item)
            for chunk in _chunks(batches):
                self._deliver(chunk)
            if stop:
                return

    def _deliver(self, batches: list[Batch]) -> None:
        """Hand batches to the writer process, or store them here if there is none."""
        seq = max(b[0] for b in batches)
        if self._writer is None or not self._writer.send("logs", seq, batches):
            self._write_here(batches)

    def _write_here(self, batches: list[Batch]) -> None:
        try:
            self._write(batches)
        except Exception:
            self.dropped += sum(len(b[3]) for b in batches)
            log.exception("dropping %d log batches", len(batches))
        self._mark_stored(max(b[0] for b in batches))

    def _write(self, batches: list[Batch]) -> None:
        with self._lock:
            write_batches(self._conn, batches)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn, self._lock)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything emitted so far is stored (tests, shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self._writer is not None and self._own_writer:
            self._writer.close()
        with self._lock:
            self._conn.close()
        with self._readers_lock:
            self._closed = True
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._idle_readers.clear()

    # -- groups, streams, retention --------------------------------------------------------

    def create_group(self, name: str, now: int | None = None) -> bool:
        """False if the group already exists."""
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO log_groups (name, created) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, now or _now_ms()),
            )
            return cursor.rowcount == 1

    def create_stream(self, group: str, name: str, now: int | None = None) -> bool:
        """False if the stream already exists (the caller checks that the group does)."""
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO log_streams (log_group, name, created) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (group, name, now or _now_ms()),
            )
            return cursor.rowcount == 1

    def delete_group(self, name: str) -> bool:
        with self._tx() as c:
            if c.execute("DELETE FROM log_groups WHERE name = ?", (name,)).rowcount == 0:
                return False
            c.execute("DELETE FROM log_streams WHERE log_group = ?", (name,))
            c.execute("DELETE FROM log_events WHERE log_group = ?", (name,))
            return True

    def delete_stream(self, group: str, name: str) -> bool:
        with self._tx() as c:
            gone = c.execute(
                "DELETE FROM log_streams WHERE log_group = ? AND name = ?", (group, name)
            ).rowcount
            if gone == 0:
                return False
            freed = sum(
                size
                for (size,) in c.execute(
                    "DELETE FROM log_events WHERE log_group = ? AND log_stream = ?"
                    " RETURNING length(CAST(message AS BLOB))",
                    (group, name),
                ).fetchall()
            )
            c.execute(
                "UPDATE log_groups SET stored_bytes = MAX(0, stored_bytes - ?) WHERE name = ?",
                (freed, group),
            )
            return True

    def set_retention(self, group: str, days: int | None) -> bool:
        """Set (or with None remove) a group's retention; False if there is no such group."""
        with self._tx() as c:
            return (
                c.execute(
                    "UPDATE log_groups SET retention_days = ? WHERE name = ?", (days, group)
                ).rowcount
                == 1
            )

    def sweep_retention(self, now: int | None = None) -> int:
        """Delete events older than their group's retention; returns how many went.

        Works in chunks of SWEEP_CHUNK events per transaction so that ingestion is never held
        up for long. Streams whose every event expired are deleted with them; the rest get
        their firstEventTimestamp moved up. Safe to call from any thread, at any interval.
        """
        now = _now_ms() if now is None else now
        with self._reader() as r:
            groups = r.execute(
                "SELECT name, retention_days FROM log_groups WHERE retention_days IS NOT NULL"
            ).fetchall()
        deleted = 0
        for group, days in groups:
            cutoff = now - int(days) * DAY_MS
            while True:
                with self._tx() as c:
                    sizes = c.execute(
                        "DELETE FROM log_events WHERE id IN (SELECT id FROM log_events"
                        " WHERE log_group = ? AND timestamp < ? ORDER BY timestamp LIMIT ?)"
                        " RETURNING length(CAST(message AS BLOB))",
                        (group, cutoff, SWEEP_CHUNK),
                    ).fetchall()
                    if sizes:
                        c.execute(
                            "UPDATE log_groups SET stored_bytes = MAX(0, stored_bytes - ?)"
                            " WHERE name = ?",
                            (sum(s for (s,) in sizes), group),
                        )
                deleted += len(sizes)
                if len(sizes) < SWEEP_CHUNK:
                    break
            with self._tx() as c:
                c.execute(
                    "DELETE FROM log_streams WHERE log_group = ? AND COALESCE(last_event, created) < ?",
                    (group, cutoff),
                )
                c.execute(
                    "UPDATE log_streams SET first_event = (SELECT MIN(timestamp) FROM log_events"
                    " WHERE log_events.log_group = log_streams.log_group"
                    " AND log_events.log_stream = log_streams.name)"
                    " WHERE log_group = ? AND first_event < ?",
                    (group, cutoff),
                )
        return deleted

    # -- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._readers_lock:
            if self._closed:
                raise RuntimeError("the log store is closed")
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            conn = connect(self._path)
            conn.execute("PRAGMA query_only = ON")
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            with self._readers_lock:
                if not self._closed:
                    self._idle_readers.append(conn)

    def group(self, name: str) -> GroupInfo | None:
        with self._reader() as r:
            row = r.execute(
                "SELECT name, created, retention_days, stored_bytes FROM log_groups WHERE name = ?",
                (name,),
            ).fetchone()
        return GroupInfo(*row) if row else None

    def groups(
        self,
        prefix: str | None = None,
        contains: str | None = None,
        names: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[GroupInfo]:
        """Groups by name; `contains` is case-insensitive (logGroupNamePattern)."""
        sql = ["SELECT name, created, retention_days, stored_bytes FROM log_groups WHERE 1"]
        args: list[object] = []
        if prefix:
            sql.append("AND name >= ? AND substr(name, 1, ?) = ?")
            args += [prefix, len(prefix), prefix]
        if contains:
            sql.append("AND instr(lower(name), lower(?)) > 0")
            args.append(contains)
        if names is not None:
            sql.append(f"AND name IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        if after is not None:
            sql.append("AND name > ?")
            args.append(after)
        sql.append("ORDER BY name LIMIT ?")
        args.append(limit)
        with self._reader() as r:
            rows = r.execute(" ".join(sql), args).fetchall()
        return [GroupInfo(*row) for row in rows]

    def stream(self, group: str, name: str) -> StreamInfo | None:
        with self._reader() as r:
            row = r.execute(
                "SELECT log_group, name, created, first_event, last_event, last_ingestion"
                " FROM log_streams WHERE log_group = ? AND name = ?",
                (group, name),
            ).fetchone()
        return StreamInfo(*row) if row else None

    def streams(
        self,
        group: str,
        prefix: str | None = None,
        by_last_event: bool = False,
        descending: bool = False,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> list[StreamInfo]:
        """A group's streams by name, or by last event time (then name).

        `after` is the (last event, name) key of the last stream of the previous page.
        """
        key = "COALESCE(last_event, 0), name" if by_last_event else "0, name"
        sql = [
            "SELECT log_group, name, created, first_event, last_event, last_ingestion"
            " FROM log_streams WHERE log_group = ?"
        ]
        args: list[object] = [group]
        if prefix:
            sql.append("AND name >= ? AND substr(name, 1, ?) = ?")
            args += [prefix, len(prefix), prefix]
        if after is not None:
            sql.append(f"AND ({key}) {'<' if descending else '>'} (?, ?)")
            args += [after[0], after[1]]
        order = " DESC" if descending else ""
        sql.append(
            f"ORDER BY COALESCE(last_event, 0){order}, name{order}"
            if by_last_event
            else f"ORDER BY name{order}"
        )
        sql.append("LIMIT ?")
        args.append(limit)
        with self._reader() as r:
            rows = r.execute(" ".join(sql), args).fetchall()
        return [StreamInfo(*row) for row in rows]

    @staticmethod
    def _where(
        group: str,
        streams: Sequence[str] | None,
        stream_prefix: str | None,
        start: int | None,
        end: int | None,
        after: Position | None,
        before: Position | None,
        until: Position | None,
        prefilter: Prefilter | None,
    ) -> tuple[str, list[object]]:
        sql = ["log_group = ?"]
        args: list[object] = [group]
        if streams is not None:
            if len(streams) == 1:
                sql.append("log_stream = ?")
            else:
                sql.append(f"log_stream IN ({', '.join('?' for _ in streams)})")
            args.extend(streams)
        if stream_prefix:
            sql.append("substr(log_stream, 1, ?) = ?")
            args += [len(stream_prefix), stream_prefix]
        if start is not None:
            sql.append("timestamp >= ?")
            args.append(start)
        if end is not None:
            sql.append("timestamp < ?")
            args.append(end)
        if after is not None:
            sql.append("(timestamp, id) > (?, ?)")
            args += list(after)
        if before is not None:
            sql.append("(timestamp, id) < (?, ?)")
            args += list(before)
        if until is not None:
            sql.append("(timestamp, id) <= (?, ?)")
            args += list(until)
        if prefilter is not None:
            for term in prefilter.all_of:
                sql.append("instr(message, ?) > 0")
                args.append(term)
            if prefilter.any_of:
                sql.append(
                    "(" + " OR ".join("instr(message, ?) > 0" for _ in prefilter.any_of) + ")"
                )
                args.extend(prefilter.any_of)
            for term in prefilter.none_of:
                sql.append("instr(message, ?) = 0")
                args.append(term)
        return " AND ".join(sql), args

    def events(
        self,
        log_group: str,
        streams: Sequence[str] | None = None,
        start: int | None = None,
        end: int | None = None,
        after: Position | None = None,
        before: Position | None = None,
        newest_first: bool = False,
        limit: int = 10_000,
        max_bytes: int | None = None,
        stream_prefix: str | None = None,
        prefilter: Prefilter | None = None,
    ) -> list[LogEvent]:
        """Events in [start, end) strictly after `after` / before `before`, oldest first.

        With `newest_first`, the newest `limit` of them are taken (still returned oldest first).
        `max_bytes` caps the page as CloudWatch does (message bytes + 26 per event).
        """
        where, args = self._where(
            log_group, streams, stream_prefix, start, end, after, before, None, prefilter
        )
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM log_events WHERE {where}"
            f" ORDER BY timestamp {order}, id {order} LIMIT ?"
        )
        with self._reader() as r:
            rows = r.execute(sql, [*args, limit]).fetchall()
        found = [_event(row) for row in rows]
        if max_bytes is not None:
            total = 0
            for i, event in enumerate(found):
                total += _size(event.message) + EVENT_OVERHEAD
                if total > max_bytes and i > 0:
                    found = found[:i]
                    break
        if newest_first:
            found.reverse()
        return found

    def search(
        self,
        log_group: str,
        pattern: FilterPattern,
        streams: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        start: int | None = None,
        end: int | None = None,
        after: Position | None = None,
        limit: int = 10_000,
        max_bytes: int = 1_048_576,
        budget_s: float = 1.0,
    ) -> SearchPage:
        """One page of FilterLogEvents: matching events in (timestamp, id) order.

        The group is read in windows of SEARCH_WINDOW index entries; in each, SQL applies the
        pattern's substring prefilter and Python its full predicate. A page ends at `limit`
        events, `max_bytes`, or when `budget_s` has been spent (then possibly with no events,
        as CloudWatch does), and `next` says where the following page starts.
        """
        found: list[LogEvent] = []
        size = 0
        cursor = after
        deadline = time.monotonic() + budget_s
        prefilter = None if pattern.kind == "all" else pattern.prefilter
        check = not pattern.exact
        with self._reader() as r:
            while True:
                boundary = self._window_end(r, log_group, cursor, start, end)
                while True:
                    where, args = self._where(
                        log_group,
                        streams,
                        stream_prefix,
                        start,
                        end,
                        cursor,
                        None,
                        boundary,
                        prefilter,
                    )
                    rows = r.execute(
                        f"SELECT {_EVENT_COLUMNS} FROM log_events WHERE {where}"
                        " ORDER BY timestamp, id LIMIT ?",
                        [*args, SEARCH_CHUNK],
                    ).fetchall()
                    for row in rows:
                        event = _event(row)
                        if not check or pattern.matches(event.message):
                            weight = _size(event.message) + EVENT_OVERHEAD
                            if found and size + weight > max_bytes:
                                return SearchPage(found, cursor)
                            found.append(event)
                            size += weight
                        cursor = event.position
                        if len(found) >= limit:
                            return SearchPage(found, cursor)
                    if len(rows) < SEARCH_CHUNK:
                        break
                    if time.monotonic() > deadline:
                        return SearchPage(found, cursor)
                if boundary is None:
                    return SearchPage(found, None)
                cursor = boundary
                if time.monotonic() > deadline:
                    return SearchPage(found, cursor)

    @staticmethod
    def _window_end(
        r: sqlite3.Connection,
        group: str,
        after: Position | None,
        start: int | None,
        end: int | None,
    ) -> Position | None:
        """The position SEARCH_WINDOW events on from `after` (an index-only read); None if the
        group has fewer left."""
        where, args = LogStore._where(group, None, None, start, end, after, None, None, None)
        row = r.execute(
            f"SELECT timestamp, id FROM log_events WHERE {where}"
            " ORDER BY timestamp, id LIMIT 1 OFFSET ?",
            [*args, SEARCH_WINDOW - 1],
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None
