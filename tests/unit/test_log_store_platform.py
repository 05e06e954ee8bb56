"""The log store keeps which events the platform wrote: through the writer process, in
PutLogEvents (never), in search results, and for events stored before the mark existed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.observe import logs as logs_module
from ember.observe.filter_pattern import compile_pattern
from ember.observe.logs import LogStore
from ember.store.sqlite import _migrations, connect

T0 = 1_700_000_000_000
GROUP = "/aws/lambda/unit"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore(tmp_path / "logs.sqlite3", flush_interval=0.001)
    yield s
    s.close()


def test_platform_lines_keep_their_mark_and_output_never_gets_one(store: LogStore) -> None:
    store.emit(
        GROUP,
        "s",
        [
            (T0, "START RequestId: r Version: $LATEST", True),
            (T0 + 1, "REPORT RequestId: r\tDuration: 0.01 ms"),  # printed by the function
            (T0 + 2, "REPORT RequestId: r\tDuration: 1.00 ms", True),
        ],
    )
    store.put(GROUP, "s", [(T0 + 3, "REPORT RequestId: put")])
    assert store.flush()
    events = store.events(GROUP)
    assert [(e.message[:10], e.platform) for e in events] == [
        ("START Requ", True),
        ("REPORT Req", False),
        ("REPORT Req", True),
        ("REPORT Req", False),
    ]
    page = store.search(GROUP, compile_pattern('"REPORT RequestId"'))
    assert [e.platform for e in page.events] == [False, True, False]


def test_deliveries_are_bounded_in_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_module, "MAX_DELIVERY_EVENTS", 10)
    batches = [(i, GROUP, "s", [(T0, "x")] * 4) for i in range(7)]
    big = (7, GROUP, "s", [(T0, "y")] * 25)
    chunks = list(logs_module._chunks([*batches, big]))
    assert [sum(len(b[3]) for b in chunk) for chunk in chunks] == [8, 8, 8, 4, 25]


def test_events_stored_before_the_mark_are_marked_by_their_text(tmp_path: Path) -> None:
    conn = connect(tmp_path / "old.sqlite3")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, sql in _migrations("logs"):
        if number < 3:
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (number,))
    old = [
        "START RequestId: r Version: 1",
        "END RequestId: r",
        "REPORT RequestId: r\tDuration: 1.00 ms",
        "INIT_START Runtime Version: python:3.12.v1",
        "[ember] 3 lines dropped",
        '{"time":"2024-01-01T00:00:00.000Z","type":"platform.report","record":{}}',
        "hello",
        '{"time":"x","type":"platform.report"}',
        "STARTED",
    ]
    conn.executemany(
        "INSERT INTO log_events (log_group, log_stream, timestamp, ingestion, message)"
        " VALUES (?, 's', ?, ?, ?)",
        [(GROUP, T0, T0, m) for m in old],
    )
    conn.close()
    store = LogStore(tmp_path / "old.sqlite3", writer_process=False)
    try:
        marks = [e.platform for e in store.events(GROUP)]
    finally:
        store.close()
    assert marks == [True] * 6 + [False] * 3
