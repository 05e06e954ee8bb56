"""The one-minute series: recording, CloudWatch statistics, usage, persistence and retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.observe.series import RETENTION_MINUTES, MinuteSeries, SeriesFile

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def record(
    series: MinuteSeries,
    at: float,
    outcome: str = "success",
    duration: float = 10.0,
    billed: int = 10,
    memory: int = 128,
    function: str = "f",
    version: str = "$LATEST",
    cold: bool = False,
    concurrency: int = 1,
    account: int = 1,
) -> None:
    series.record(
        function,
        version,
        at,
        outcome,
        duration,
        billed,
        memory,
        cold,
        5.0 if cold else None,
        concurrency,
        concurrency,
        account,
    )


def test_invocations_errors_and_duration_statistics() -> None:
    s = MinuteSeries()
    record(s, T0 + 1, duration=2.0, billed=2, cold=True)
    record(s, T0 + 2, outcome="error", duration=8.0, billed=8)
    record(s, T0 + 61, outcome="timeout", duration=30.0, billed=30)
    record(s, T0 + 62, outcome="throttle", duration=0.0, billed=0)
    [inv0, inv1] = s.datapoints("Invocations", "f", None, T0, T0 + 120, 60)
    assert (inv0.timestamp, inv0.statistic("Sum"), inv0.statistic("SampleCount")) == (T0, 2, 2)
    assert (inv1.timestamp, inv1.statistic("Sum")) == (T0 + 60, 1)  # throttles are not invocations
    [errors] = s.datapoints("Errors", "f", None, T0, T0 + 120, 120)
    assert errors.statistic("Sum") == 2 and errors.statistic("SampleCount") == 3
    assert errors.statistic("Average") == pytest.approx(2 / 3)
    assert (errors.statistic("Minimum"), errors.statistic("Maximum")) == (0, 1)
    [duration] = s.datapoints("Duration", "f", None, T0, T0 + 120, 120)
    assert duration.statistic("SampleCount") == 3
    assert (duration.statistic("Minimum"), duration.statistic("Maximum")) == (2.0, 30.0)
    assert duration.statistic("Average") == pytest.approx(40 / 3)
    [throttles] = s.datapoints("Throttles", "f", None, T0, T0 + 120, 60)
    assert throttles.timestamp == T0 + 60 and throttles.statistic("Sum") == 1


def test_dimensions_select_function_and_version() -> None:
    s = MinuteSeries()
    record(s, T0 + 1, version="1")
    record(s, T0 + 2, version="2")
    record(s, T0 + 3, version="2", function="g")
    assert [
        p.statistic("Sum") for p in s.datapoints("Invocations", "f", None, T0, T0 + 60, 60)
    ] == [2]
    assert [p.statistic("Sum") for p in s.datapoints("Invocations", "f", "2", T0, T0 + 60, 60)] == [
        1
    ]
    assert [
        p.statistic("Sum") for p in s.datapoints("Invocations", None, None, T0, T0 + 60, 60)
    ] == [3]
    assert s.datapoints("Invocations", "f", "3", T0, T0 + 60, 60) == []
    assert s.datapoints("NoSuchMetric", "f", None, T0, T0 + 60, 60) == []


def test_concurrency_is_the_maximum_per_minute() -> None:
    s = MinuteSeries()
    record(s, T0 + 1, concurrency=3, account=5)
    record(s, T0 + 2, concurrency=1, account=2)
    record(s, T0 + 61, concurrency=2, account=2)
    points = s.datapoints("ConcurrentExecutions", "f", None, T0, T0 + 120, 60)
    assert [p.statistic("Maximum") for p in points] == [3, 2]
    [two_minutes] = s.datapoints("ConcurrentExecutions", "f", None, T0, T0 + 120, 120)
    assert two_minutes.statistic("Maximum") == 3 and two_minutes.statistic("SampleCount") == 2
    account = s.datapoints("ConcurrentExecutions", None, None, T0, T0 + 120, 60)
    assert [p.statistic("Maximum") for p in account] == [5, 2]


def test_period_boundaries_follow_the_start_time() -> None:
    s = MinuteSeries()
    for minute in range(10):
        record(s, T0 + minute * 60 + 5)
    points = s.datapoints("Invocations", "f", None, T0 + 120, T0 + 600, 300)
    assert [(p.timestamp, p.statistic("Sum")) for p in points] == [(T0 + 120, 5), (T0 + 420, 3)]


def test_usage_counts_billed_time_and_gb_seconds() -> None:
    s = MinuteSeries()
    record(s, T0 + 1, billed=100, memory=1024)
    record(s, T0 + 2, billed=3, memory=128, version="1")
    record(s, T0 + 3, outcome="error", billed=7, memory=128, version="1")
    record(s, T0 + 4, outcome="throttle", billed=0)
    record(s, T0 + 5, outcome="fault", billed=0, duration=0.0)
    [row] = s.usage(T0, T0 + 60, by_version=False)
    assert (row.function, row.version, row.requests, row.billed_ms) == ("f", None, 3, 110)
    assert row.gb_seconds == pytest.approx(0.1 * 1 + 0.010 * 0.125)
    rows = s.usage(T0, T0 + 60, by_version=True)
    assert [(r.version, r.requests, r.billed_ms) for r in rows] == [
        ("$LATEST", 1, 100),
        ("1", 2, 10),
    ]
    assert s.usage(T0 + 120, T0 + 180, by_version=False) == []


def test_persisted_series_load_back_and_old_minutes_go(tmp_path: Path) -> None:
    s = MinuteSeries()
    now = T0 + RETENTION_MINUTES * 60 + 30
    record(s, T0 + 1)  # older than 24 h at `now`
    record(s, now - 10, outcome="error", duration=4.0, billed=4)
    record(s, now - 5, cold=True)
    store = SeriesFile(tmp_path / "metrics.sqlite3")
    store.write(s.snapshot(), 0)
    assert s.snapshot() == []  # nothing changed since
    oldest = s.prune(now)
    store.write(s.snapshot(), oldest)
    store.close()

    again = MinuteSeries()
    reopened = SeriesFile(tmp_path / "metrics.sqlite3")
    again.load(reopened.load(0))
    reopened.close()
    assert set(again.buckets) == set(s.buckets)
    assert all(f == "" or m >= oldest for f, _, m in again.buckets)
    [point] = again.datapoints("Duration", "f", None, now - 60, now, 60)
    assert (point.statistic("SampleCount"), point.statistic("Minimum")) == (2, 4.0)
    assert again.buckets[("f", "$LATEST", int((now - 5) // 60))].cold_starts == 1
