"""The durable queue of asynchronous invocations (its own SQLite file, synced on every commit).

All writes go through one writer thread that commits whatever has piled up in one transaction
(group commit): many concurrent `enqueue` calls cost one fsync. A caller's future resolves only
after its transaction committed, so a 202 is never promised for an event that is not on disk.
When a batch fails, each operation is retried alone, so one bad write never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.errors import EmberError
from ember.store.data_files import DataFileWatch
from ember.store.sqlite import connect, disk_full_error, is_disk_full, migrate

log = logging.getLogger(__name__)

MAX_BATCH = 4096


@dataclass(frozen=True)
class NewEvent:
    request_id: str
    function: str
    qualifier: str | None
    payload: bytes
    trace_id: str | None = None
    visible_at: float | None = None


@dataclass
class QueuedEvent:
    id: int
    request_id: str
    function: str
    qualifier: str | None
    trace_id: str | None
    enqueued_at: float
    visible_at: float
    attempts: int


@dataclass
class FunctionStats:
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0


Operation = Callable[[sqlite3.Connection], Any]


class _Job:
    __slots__ = ("future", "loop", "operation")

    def __init__(
        self, operation: Operation, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.operation = operation
        self.loop = loop
        self.future = future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _rollback(c: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; a failing rollback must not kill the writer thread."""
    try:
        if c.in_transaction:
            c.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("rolling back the event queue's transaction failed")


class EventQueue:
    def __init__(self, path: Path, watch: DataFileWatch | None = None) -> None:
        self._path = path
        self._watch = watch
        self._writer_conn = connect(path)
        self._writer_conn.execute("PRAGMA synchronous=FULL")
        self._writer_conn.execute("BEGIN IMMEDIATE")
        migrate(self._writer_conn, "queue")
        self._writer_conn.execute("COMMIT")
        self._reader = connect(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ember-queue-writer", daemon=True)
        self._thread.start()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commit(batch)
                    return
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        c = self._writer_conn
        try:
            self._refuse_in_fault()
        except EmberError as fault:
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.future, None, fault)
            return
        try:
            c.execute("BEGIN IMMEDIATE")
            results = [job.operation(c) for job in batch]
            c.execute("COMMIT")
        except Exception:
            _rollback(c)
            for job in batch:  # isolate the failure: every other operation still commits
                self._commit_one(job)
            return
        self._settle_committed(batch, results)

    def _commit_one(self, job: _Job) -> None:
        c = self._writer_conn
        try:
            c.execute("BEGIN IMMEDIATE")
            result = job.operation(c)
            c.execute("COMMIT")
        except Exception as exc:
            _rollback(c)
            error: BaseException = disk_full_error(self._path) if is_disk_full(exc) else exc
            job.loop.call_soon_threadsafe(_settle, job.future, None, error)
            return
        self._settle_committed([job], [result])

    def _refuse_in_fault(self) -> None:
        if self._watch is not None:
            self._watch.refuse_writes()

    def _settle_committed(self, batch: list[_Job], results: list[Any]) -> None:
        """Resolve the futures of a committed batch, once the queue file is confirmed to be
        the one at its path: a commit into a deleted or replaced file is an error, never a 202."""
        try:
            if self._watch is not None:
                self._watch.confirm(self._path)
        except EmberError as fault:
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.future, None, fault)
            return
        for job, result in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, result, None)

    async def _submit(self, operation: Operation) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Job(operation, loop, future))
        return await future

    # -- operations ----------------------------------------------------------------------

    @staticmethod
    def _insert(c: sqlite3.Connection, events: list[NewEvent], now: float) -> list[QueuedEvent]:
        stored = []
        for event in events:
            visible = event.visible_at if event.visible_at is not None else now
            row = c.execute(
                "INSERT INTO async_events (request_id, function, qualifier, payload, trace_id,"
                " enqueued_at, visible_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 0) RETURNING id",
                (
                    event.request_id,
                    event.function,
                    event.qualifier,
                    event.payload,
                    event.trace_id,
                    now,
                    visible,
                ),
            ).fetchone()
            stored.append(
                QueuedEvent(
                    row[0],
                    event.request_id,
                    event.function,
                    event.qualifier,
                    event.trace_id,
                    now,
                    visible,
                    0,
                )
            )
        return stored

    async def enqueue(self, event: NewEvent) -> QueuedEvent:
        """Store an event durably (fsync'd) and return it; raises if it could not be stored."""
        now = time.time()
        stored: list[QueuedEvent] = await self._submit(lambda c: self._insert(c, [event], now))
        return stored[0]

    async def complete(
        self, event: QueuedEvent, outcome: str, followups: list[NewEvent]
    ) -> list[QueuedEvent]:
        """Remove a finished event, count its outcome (succeeded | failed | expired) and, in the
        same transaction, enqueue what it leads to (destination deliveries)."""
        if outcome not in ("succeeded", "failed", "expired"):
            raise ValueError(outcome)
        now = time.time()

        def operation(c: sqlite3.Connection) -> list[QueuedEvent]:
            c.execute("DELETE FROM async_events WHERE id = ?", (event.id,))
            self._count(c, event.function, outcome)
            return self._insert(c, followups, now)

        result: list[QueuedEvent] = await self._submit(operation)
        return result

    async def retry_later(self, event: QueuedEvent, visible_at: float) -> None:
        """Record a failed attempt; the event becomes visible again at `visible_at`."""

        def operation(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE async_events SET attempts = ?, visible_at = ? WHERE id = ?",
                (event.attempts, visible_at, event.id),
            )
            self._count(c, event.function, "retried")

        await self._submit(operation)

    @staticmethod
    def _count(c: sqlite3.Connection, function: str, column: str) -> None:
        c.execute(
            f"INSERT INTO async_stats (function, {column}) VALUES (?, 1)"
            f" ON CONFLICT (function) DO UPDATE SET {column} = {column} + 1",
            (function,),
        )

    # -- reads (the event loop's own connection; WAL lets them run beside the writer) ----

    def payload(self, event_id: int) -> bytes | None:
        row = self._reader.execute(
            "SELECT payload FROM async_events WHERE id = ?", (event_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def load(self) -> list[QueuedEvent]:
        """Every stored event (at start-up: whatever was running when the server stopped runs
        again — delivery is at least once)."""
        rows = self._reader.execute(
            "SELECT id, request_id, function, qualifier, trace_id, enqueued_at, visible_at, attempts"
            " FROM async_events ORDER BY id"
        ).fetchall()
        return [QueuedEvent(*row) for row in rows]

    def stats(self) -> dict[str, FunctionStats]:
        rows = self._reader.execute(
            "SELECT function, succeeded, retried, failed, expired FROM async_stats"
        ).fetchall()
        return {row[0]: FunctionStats(*row[1:]) for row in rows}

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
        self._writer_conn.close()
        self._reader.close()
