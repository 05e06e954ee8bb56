"""One-minute metric series per function version for the last 24 hours, and usage from them.

The invoker's metrics hook calls `MinuteSeries.record` for every invocation and throttle: a
dict lookup and a few additions on the event loop. Every few seconds the buckets that changed
are copied (`snapshot`) and written to `metrics.sqlite3` on a thread (`SeriesFile`), so a
restart keeps them; buckets older than 24 hours are dropped from memory and disk.

CloudWatch's view of these buckets (what AWS/Lambda publishes per invocation) is in
`datapoints`: Invocations (one sample of 1 per invocation), Errors (one sample of 0 or 1 per
invocation, so its Average is the error rate), Throttles (1 per throttle), Duration (one sample
per invocation that ran, in ms) and ConcurrentExecutions (one sample per minute: the minute's
maximum).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ember.store.sqlite import connect, migrate, transaction

RETENTION_MINUTES = 24 * 60
ACCOUNT = ""  # the `function` of account-wide buckets (concurrency across all functions)

METRIC_UNITS = {
    "Invocations": "Count",
    "Errors": "Count",
    "Throttles": "Count",
    "Duration": "Milliseconds",
    "ConcurrentExecutions": "Count",
}

_COLUMNS = (
    "invocations",
    "errors",
    "throttles",
    "faults",
    "cold_starts",
    "duration_sum",
    "duration_min",
    "duration_max",
    "duration_n",
    "init_sum",
    "init_n",
    "concurrency",
    "function_concurrency",
    "billed_ms",
    "mb_ms",
)


class Bucket:
    """One function version's figures for one minute."""

    __slots__ = _COLUMNS

    def __init__(self) -> None:
        self.invocations = 0  # ran or faulted (throttles are not invocations, as in Lambda)
        self.errors = 0  # function errors, timeouts and platform faults
        self.throttles = 0
        self.faults = 0  # platform errors (500): never billed
        self.cold_starts = 0
        self.duration_sum = 0.0
        self.duration_min: float | None = None
        self.duration_max: float | None = None
        self.duration_n = 0
        self.init_sum = 0.0
        self.init_n = 0
        self.concurrency = 0
        self.function_concurrency = 0
        self.billed_ms = 0
        self.mb_ms = 0

    def row(self) -> tuple[float | int | None, ...]:
        return tuple(getattr(self, c) for c in _COLUMNS)

    @classmethod
    def from_row(cls, values: Iterable[float | int | None]) -> Bucket:
        bucket = cls()
        for name, value in zip(_COLUMNS, values, strict=True):
            setattr(bucket, name, value)
        return bucket


Key = tuple[str, str, int]  # function, version, minute since the epoch


@dataclass(frozen=True)
class Datapoint:
    timestamp: float  # epoch seconds: the start of the period
    samples: int
    total: float
    minimum: float
    maximum: float

    def statistic(self, name: str) -> float:
        if name == "SampleCount":
            return float(self.samples)
        if name == "Sum":
            return self.total
        if name == "Average":
            return self.total / self.samples if self.samples else 0.0
        if name == "Minimum":
            return self.minimum
        if name == "Maximum":
            return self.maximum
        raise ValueError(name)


@dataclass(frozen=True)
class UsageRow:
    function: str
    version: str | None  # None when grouped by function
    requests: int
    billed_ms: int
    gb_seconds: float


class MinuteSeries:
    """In-memory one-minute buckets; every method runs on the event loop (no locks)."""

    def __init__(self) -> None:
        self.buckets: dict[Key, Bucket] = {}
        self.dirty: set[Key] = set()

    # -- writing (the hot path) -------------------------------------------------------------

    def record(
        self,
        function: str,
        version: str,
        received: float,
        outcome: str,
        duration_ms: float,
        billed_ms: int,
        memory_mb: int,
        cold: bool,
        init_ms: float | None,
        concurrency: int,
        function_concurrency: int,
        account_concurrency: int,
    ) -> None:
        minute = int(received // 60)
        key = (function, version, minute)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket()
        if outcome == "throttle":
            bucket.throttles += 1
        else:
            bucket.invocations += 1
            if outcome != "success":
                bucket.errors += 1
            if outcome == "fault":
                bucket.faults += 1
            else:
                bucket.duration_sum += duration_ms
                bucket.duration_n += 1
                if bucket.duration_min is None or duration_ms < bucket.duration_min:
                    bucket.duration_min = duration_ms
                if bucket.duration_max is None or duration_ms > bucket.duration_max:
                    bucket.duration_max = duration_ms
                bucket.billed_ms += billed_ms
                bucket.mb_ms += billed_ms * memory_mb
            if cold:
                bucket.cold_starts += 1
                if init_ms is not None:
                    bucket.init_sum += init_ms
                    bucket.init_n += 1
            if concurrency > bucket.concurrency:
                bucket.concurrency = concurrency
            if function_concurrency > bucket.function_concurrency:
                bucket.function_concurrency = function_concurrency
        self.dirty.add(key)
        account_key = (ACCOUNT, ACCOUNT, minute)
        account = self.buckets.get(account_key)
        if account is None:
            account = self.buckets[account_key] = Bucket()
        if account_concurrency > account.concurrency:
            account.concurrency = account_concurrency
            self.dirty.add(account_key)

    # -- persistence ------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[object, ...]]:
        """Rows for the buckets changed since the last snapshot (to be written elsewhere)."""
        rows: list[tuple[object, ...]] = []
        for key in self.dirty:
            bucket = self.buckets.get(key)
            if bucket is not None:
                rows.append((*key, *bucket.row()))
        self.dirty.clear()
        return rows

    def prune(self, now: float) -> int:
        """Drop buckets older than the retention; returns the oldest minute kept."""
        oldest = int(now // 60) - RETENTION_MINUTES
        for key in [k for k in self.buckets if k[2] < oldest]:
            del self.buckets[key]
            self.dirty.discard(key)
        return oldest

    def load(self, rows: Iterable[tuple[object, ...]]) -> None:
        for row in rows:
            function, version, minute = str(row[0]), str(row[1]), int(row[2])  # type: ignore[call-overload]
            self.buckets[(function, version, minute)] = Bucket.from_row(row[3:])  # type: ignore[arg-type]

    # -- reading ----------------------------------------------------------------------------

    def select(
        self, function: str | None, version: str | None, start_minute: int, end_minute: int
    ) -> dict[int, list[Bucket]]:
        """Buckets by minute in [start, end). function None = every function (not the
        account rows); version None = every version of it."""
        found: dict[int, list[Bucket]] = {}
        for (fn, ver, minute), bucket in self.buckets.items():
            if not start_minute <= minute < end_minute:
                continue
            if fn == ACCOUNT or (function is not None and fn != function):
                continue
            if version is not None and ver != version:
                continue
            found.setdefault(minute, []).append(bucket)
        return found

    def versions(self, since_minute: int) -> set[tuple[str, str]]:
        """(function, version) pairs with data since `since_minute`."""
        return {
            (fn, ver)
            for fn, ver, minute in self.buckets
            if fn != ACCOUNT and minute >= since_minute
        }

    def account_concurrency(self, start_minute: int, end_minute: int) -> dict[int, int]:
        return {
            minute: b.concurrency
            for (fn, _, minute), b in self.buckets.items()
            if fn == ACCOUNT and start_minute <= minute < end_minute
        }

    def datapoints(
        self,
        metric: str,
        function: str | None,
        version: str | None,
        start: float,
        end: float,
        period: int,
    ) -> list[Datapoint]:
        """CloudWatch datapoints of `metric` for periods of `period` s from `start` to `end`."""
        start_minute = math.ceil(start / 60)
        end_minute = math.ceil(end / 60)
        per_minute: dict[int, tuple[int, float, float, float]] = {}
        if metric == "ConcurrentExecutions" and function is None:
            for minute, value in self.account_concurrency(start_minute, end_minute).items():
                if value:
                    per_minute[minute] = (1, value, value, value)
        else:
            for minute, buckets in self.select(function, version, start_minute, end_minute).items():
                sample = _minute_sample(metric, buckets, by_version=version is not None)
                if sample is not None:
                    per_minute[minute] = sample
        periods: dict[float, list[tuple[int, float, float, float]]] = {}
        for minute, sample in per_minute.items():
            at = start + ((minute * 60 - start) // period) * period
            periods.setdefault(at, []).append(sample)
        points = []
        for at, samples in sorted(periods.items()):
            points.append(
                Datapoint(
                    timestamp=at,
                    samples=sum(s[0] for s in samples),
                    total=sum(s[1] for s in samples),
                    minimum=min(s[2] for s in samples),
                    maximum=max(s[3] for s in samples),
                )
            )
        return points

    def usage(self, since: float, until: float, by_version: bool) -> list[UsageRow]:
        table: dict[tuple[str, str | None], list[int]] = {}
        start_minute, end_minute = int(since // 60), int(until // 60) + 1
        for (fn, ver, minute), b in self.buckets.items():
            if fn == ACCOUNT or not start_minute <= minute < end_minute:
                continue
            row = table.setdefault((fn, ver if by_version else None), [0, 0, 0])
            row[0] += b.invocations - b.faults
            row[1] += b.billed_ms
            row[2] += b.mb_ms
        return [
            UsageRow(fn, ver, requests, billed, mb_ms / 1000 / 1024)
            for (fn, ver), (requests, billed, mb_ms) in sorted(
                table.items(), key=lambda item: (item[0][0], item[0][1] or "")
            )
        ]


def _minute_sample(
    metric: str, buckets: list[Bucket], by_version: bool
) -> tuple[int, float, float, float] | None:
    """(samples, sum, min, max) of one minute of `metric` over some function versions."""
    if metric == "Invocations":
        n = sum(b.invocations for b in buckets)
        return (n, float(n), 1.0, 1.0) if n else None
    if metric == "Errors":
        n = sum(b.invocations for b in buckets)
        errors = sum(b.errors for b in buckets)
        if not n:
            return None
        return (n, float(errors), 0.0 if errors < n else 1.0, 1.0 if errors else 0.0)
    if metric == "Throttles":
        n = sum(b.throttles for b in buckets)
        return (n, float(n), 1.0, 1.0) if n else None
    if metric == "Duration":
        n = sum(b.duration_n for b in buckets)
        if not n:
            return None
        mins = [b.duration_min for b in buckets if b.duration_min is not None]
        maxs = [b.duration_max for b in buckets if b.duration_max is not None]
        return (n, sum(b.duration_sum for b in buckets), min(mins), max(maxs))
    if metric == "ConcurrentExecutions":
        value = max(b.concurrency if by_version else b.function_concurrency for b in buckets)
        return (1, float(value), float(value), float(value)) if value else None
    return None


class SeriesFile:
    """`metrics.sqlite3`: the series' copy on disk. Used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self._conn: sqlite3.Connection = connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            migrate(self._conn, "metrics")
            self._conn.execute("COMMIT")

    def load(self, since_minute: int) -> list[tuple[object, ...]]:
        with self._lock:
            rows: list[tuple[object, ...]] = self._conn.execute(
                f"SELECT function, version, minute, {', '.join(_COLUMNS)} FROM minute_series"
                " WHERE minute >= ?",
                (since_minute,),
            ).fetchall()
        return rows

    def write(self, rows: list[tuple[object, ...]], oldest_minute: int) -> None:
        placeholders = ", ".join("?" * (3 + len(_COLUMNS)))
        with transaction(self._conn, self._lock):  # rolled back if the COMMIT fails too
            self._conn.executemany(
                f"INSERT OR REPLACE INTO minute_series (function, version, minute,"
                f" {', '.join(_COLUMNS)}) VALUES ({placeholders})",
                rows,
            )
            self._conn.execute("DELETE FROM minute_series WHERE minute < ?", (oldest_minute,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
