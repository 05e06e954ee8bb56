"""Metrics: the invoker hook that counts every invocation, and the Prometheus view of them.

`Metrics.observe` is registered on `Invoker.hooks`. It only adds to plain dicts (the
Prometheus counters and histograms are built from them at scrape time by a custom collector
on a dedicated CollectorRegistry, so the hot path never touches prometheus_client's locks)
and records the one-minute series (observe/series.py). Gauges — concurrency, async queues,
sandbox and instance counts — are read from the live parts at scrape time.

Concurrency: at the moment an invocation reports, its own slot is still held, so the account's
`in_flight` and the pool's busy instances (+1 for the one just released) are the concurrency
just before it ended. The peak of a period is always followed by an end, so the maximum of
these samples is the period's true maximum.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ember.dispatch.async_dispatcher import AsyncDispatcher
from ember.dispatch.concurrency import ConcurrencyLimiter
from ember.dispatch.invoker import InvocationReport
from ember.observe.series import RETENTION_MINUTES, MinuteSeries, SeriesFile
from ember.sandbox.sandbox import SandboxManager
from ember.worker.pool import WorkerPool

log = logging.getLogger(__name__)

PERSIST_INTERVAL_S = 10.0
# Seconds. Lambda bills in 1 ms steps; warm Ember invocations take well under a millisecond.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
INIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("success", "error", "timeout", "throttle", "fault")


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


class _VersionStats:
    """Counters of one function version (labels function, version)."""

    __slots__ = ("billed_ms", "cold_starts", "duration", "error_types", "init", "mb_ms", "outcomes")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.error_types: dict[str, int] = {}
        self.cold_starts = 0
        self.billed_ms = 0
        self.mb_ms = 0
        self.duration = _Histogram(DURATION_BUCKETS)
        self.init = _Histogram(INIT_BUCKETS)


class Metrics:
    def __init__(
        self,
        series: MinuteSeries,
        pool: WorkerPool,
        sandboxes: SandboxManager,
        limiter: ConcurrencyLimiter,
        dispatcher: AsyncDispatcher,
        store: SeriesFile | None = None,
    ) -> None:
        self.series = series
        self.pool = pool
        self.sandboxes = sandboxes
        self.limiter = limiter
        self.dispatcher = dispatcher
        self.store = store
        self.stats: dict[tuple[str, str], _VersionStats] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._task: asyncio.Task[None] | None = None
        if store is not None:
            series.load(store.load(int(time.time() // 60) - RETENTION_MINUTES))

    # -- the hook ---------------------------------------------------------------------------

    def observe(self, report: InvocationReport) -> None:
        key = (report.function, report.version)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = _VersionStats()
        outcome = report.outcome
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
        if report.error_type is not None:
            stats.error_types[report.error_type] = stats.error_types.get(report.error_type, 0) + 1
        version_busy = function_busy = 0
        if outcome != "throttle" and outcome != "fault":
            stats.duration.observe(report.duration_ms / 1000)
            stats.billed_ms += report.billed_ms
            stats.mb_ms += report.billed_ms * report.memory_mb
            version_busy, function_busy = self._busy(report.function, report.version)
        if report.cold:
            stats.cold_starts += 1
            if report.init_ms is not None:
                stats.init.observe(report.init_ms / 1000)
        self.series.record(
            report.function,
            report.version,
            report.received,
            outcome,
            report.duration_ms,
            report.billed_ms,
            report.memory_mb,
            report.cold,
            report.init_ms,
            version_busy + 1,
            function_busy + 1,
            self.limiter.in_flight,
        )

    def _busy(self, function: str, version: str) -> tuple[int, int]:
        """Instances of the function (and of this version) busy right now."""
        of_version = of_function = 0
        for key, group in self.pool.groups.items():
            if key.name == function:
                busy = group.total - len(group.idle)
                of_function += busy
                if key.version == version:
                    of_version += busy
        return of_version, of_function

    # -- Prometheus -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- persistence ------------------------------------------------------------------------

    def start(self) -> None:
        if self.store is not None:
            self._task = asyncio.get_running_loop().create_task(self._persist_loop())

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(PERSIST_INTERVAL_S)
            try:
                await self.persist()
            except Exception:
                log.exception("could not persist the metric series")

    async def persist(self) -> None:
        if self.store is None:
            return
        oldest = self.series.prune(time.time())
        rows = self.series.snapshot()
        await asyncio.to_thread(self.store.write, rows, oldest)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.store is not None:
            try:
                oldest = self.series.prune(time.time())
                self.store.write(self.series.snapshot(), oldest)
            except Exception:
                log.exception("could not persist the metric series")
            self.store.close()


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        labels = ["function", "version"]
        invocations = CounterMetricFamily(
            "ember_invocations",
            "Invocations by outcome (throttles included).",
            labels=[*labels, "outcome"],
        )
        errors = CounterMetricFamily(
            "ember_errors",
            "Invocations that ended in a function error, timeout or platform fault.",
            labels=labels,
        )
        error_types = CounterMetricFamily(
            "ember_errors_by_type", "Errors by error type.", labels=[*labels, "error_type"]
        )
        throttles = CounterMetricFamily(
            "ember_throttles", "Throttled invocations (429).", labels=labels
        )
        cold = CounterMetricFamily(
            "ember_cold_starts", "Invocations that started a new instance.", labels=labels
        )
        billed = CounterMetricFamily("ember_billed_milliseconds", "Billed duration.", labels=labels)
        gb_s = CounterMetricFamily("ember_gb_seconds", "Billed GB-seconds.", labels=labels)
        duration = HistogramMetricFamily(
            "ember_invocation_duration_seconds", "Handler duration.", labels=labels
        )
        init = HistogramMetricFamily(
            "ember_init_duration_seconds", "Runtime init duration on cold starts.", labels=labels
        )
        for (function, version), s in sorted(m.stats.items()):
            lv = [function, version]
            for outcome, count in s.outcomes.items():
                invocations.add_metric([*lv, outcome], count)
            errors.add_metric(lv, s.outcomes["error"] + s.outcomes["timeout"] + s.outcomes["fault"])
            for error_type, count in sorted(s.error_types.items()):
                error_types.add_metric([*lv, error_type], count)
            throttles.add_metric(lv, s.outcomes["throttle"])
            cold.add_metric(lv, s.cold_starts)
            billed.add_metric(lv, s.billed_ms)
            gb_s.add_metric(lv, s.mb_ms / 1000 / 1024)
            duration.add_metric(lv, s.duration.buckets(), s.duration.total)
            init.add_metric(lv, s.init.buckets(), s.init.total)
        yield from (invocations, errors, error_types, throttles, cold, billed, gb_s, duration, init)

        concurrent = GaugeMetricFamily(
            "ember_concurrent_executions", "Invocations running now, account-wide."
        )
        concurrent.add_metric([], m.limiter.in_flight)
        yield concurrent
        per_function = GaugeMetricFamily(
            "ember_function_concurrent_executions",
            "Busy instances per function version.",
            labels=labels,
        )
        busy: dict[tuple[str, str], int] = {}
        for key, group in m.pool.groups.items():
            k = (key.name, key.version)
            busy[k] = busy.get(k, 0) + group.total - len(group.idle)
        for k, count in sorted(busy.items()):
            per_function.add_metric(list(k), count)
        yield per_function

        stats = m.dispatcher.stats()
        depth = GaugeMetricFamily(
            "ember_async_queue_depth", "Asynchronous events waiting.", labels=["function"]
        )
        age = GaugeMetricFamily(
            "ember_async_queue_oldest_age_seconds",
            "Age of the oldest waiting asynchronous event.",
            labels=["function"],
        )
        in_flight = GaugeMetricFamily(
            "ember_async_in_flight", "Asynchronous attempts running.", labels=["function"]
        )
        finished = CounterMetricFamily(
            "ember_async_events",
            "Asynchronous events finished, by result.",
            labels=["function", "result"],
        )
        retries = CounterMetricFamily(
            "ember_async_retries", "Asynchronous attempts retried.", labels=["function"]
        )
        for function, row in sorted(stats.items()):
            depth.add_metric([function], row.queued)
            age.add_metric([function], row.oldest_age_s)
            in_flight.add_metric([function], row.in_flight)
            retries.add_metric([function], row.retries)
            finished.add_metric([function, "succeeded"], row.succeeded)
            finished.add_metric([function, "failed"], row.failures)
            finished.add_metric([function, "expired"], row.expired)
        yield from (depth, age, in_flight, finished, retries)
        deliveries = CounterMetricFamily(
            "ember_destination_deliveries",
            "Invocation records sent to destinations.",
            labels=["function", "destination"],
        )
        for (function, kind), count in sorted(m.dispatcher.destination_deliveries.items()):
            deliveries.add_metric([function, kind], count)
        yield deliveries

        blank = GaugeMetricFamily(
            "ember_sandbox_pool_blank", "Blank sandboxes ready to be claimed."
        )
        blank.add_metric([], m.sandboxes.blank_count())
        sandboxes = CounterMetricFamily(
            "ember_sandboxes_created", "Sandboxes built (blank or on demand)."
        )
        sandboxes.add_metric([], m.sandboxes.created)
        created = CounterMetricFamily("ember_instances_created", "Function instances started.")
        created.add_metric([], m.pool.created)
        destroyed = CounterMetricFamily(
            "ember_instances_destroyed",
            "Function instances destroyed (idle expiry, errors, retirement).",
        )
        destroyed.add_metric([], m.pool.destroyed)
        live = GaugeMetricFamily("ember_instances_live", "Function instances alive.")
        live.add_metric([], len(m.pool.live))
        idle = GaugeMetricFamily(
            "ember_instances_idle", "Warm instances waiting for an invocation."
        )
        idle.add_metric([], m.pool.idle_count())
        yield from (blank, sandboxes, created, destroyed, live, idle)
