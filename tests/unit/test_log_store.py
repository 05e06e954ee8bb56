"""The log store below the Logs API: ordering, paging, search windows, deletes and retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.observe import logs as logs_module
from ember.observe.filter_pattern import compile_pattern
from ember.observe.logs import DAY_MS, LogStore

T0 = 1_700_000_000_000
GROUP = "/aws/lambda/unit"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore(tmp_path / "logs.sqlite3", flush_interval=0.001)
    yield s
    s.close()


def test_emit_is_stored_by_the_writer_and_creates_group_and_stream(store: LogStore) -> None:
    store.emit(GROUP, "s1", [(T0, "one"), (T0 + 1, "two")])
    assert store.flush()
    group = store.group(GROUP)
    assert group is not None and group.stored_bytes == 6 and group.retention_days is None
    stream = store.stream(GROUP, "s1")
    assert stream is not None and (stream.first_event, stream.last_event) == (T0, T0 + 1)
    assert [e.message for e in store.events(GROUP)] == ["one", "two"]


def test_events_come_in_timestamp_then_emission_order(store: LogStore) -> None:
    store.put(GROUP, "s1", [(T0 + 5, "late"), (T0, "early"), (T0 + 5, "late-second")])
    store.put(GROUP, "s2", [(T0 + 1, "other stream")])
    assert [e.message for e in store.events(GROUP)] == [
        "early",
        "other stream",
        "late",
        "late-second",
    ]
    assert [e.message for e in store.events(GROUP, streams=["s1"])] == [
        "early",
        "late",
        "late-second",
    ]


def test_events_newest_first_page_and_byte_cap(store: LogStore) -> None:
    store.put(GROUP, "s", [(T0 + i, f"m{i}") for i in range(10)])
    newest = store.events(GROUP, newest_first=True, limit=3)
    assert [e.message for e in newest] == ["m7", "m8", "m9"]  # still oldest first
    before = store.events(GROUP, before=newest[0].position, newest_first=True, limit=3)
    assert [e.message for e in before] == ["m4", "m5", "m6"]
    after = store.events(GROUP, after=newest[0].position)
    assert [e.message for e in after] == ["m8", "m9"]
    capped = store.events(GROUP, max_bytes=2 * (2 + 26))
    assert [e.message for e in capped] == ["m0", "m1"]
    assert [e.message for e in store.events(GROUP, start=T0 + 2, end=T0 + 4)] == ["m2", "m3"]


def test_search_pages_through_windows_and_resumes(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "SEARCH_WINDOW", 7)
    monkeypatch.setattr(logs_module, "SEARCH_CHUNK", 3)
    store.put(
        GROUP, "s", [(T0 + i, f"line {i} {'hit' if i % 5 == 0 else 'miss'}") for i in range(50)]
    )
    pattern = compile_pattern("hit")
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = store.search(GROUP, pattern, after=after, limit=3)
        seen.extend(e.message for e in page.events)
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert seen == [f"line {i} hit" for i in range(0, 50, 5)]
    assert pages >= 4


def test_search_with_a_python_predicate_and_stream_filters(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "SEARCH_WINDOW", 4)
    store.put(GROUP, "2024/01/01/[$LATEST]a", [(T0 + i, f'{{"n": {i}}}') for i in range(10)])
    store.put(GROUP, "2024/01/01/[$LATEST]b", [(T0 + i, f'{{"n": {100 + i}}}') for i in range(10)])
    pattern = compile_pattern("{ $.n >= 5 && $.n < 105 }")
    page = store.search(GROUP, pattern)
    assert page.next is None
    expected = [100, 101, 102, 103, 104, 5, 6, 7, 8, 9]  # by timestamp, then emission
    assert [e.message for e in page.events] == [f'{{"n": {n}}}' for n in expected]
    only_a = store.search(GROUP, pattern, stream_prefix="2024/01/01/[$LATEST]a")
    assert [e.message for e in only_a.events] == [f'{{"n": {i}}}' for i in range(5, 10)]
    only_b = store.search(
        GROUP, pattern, streams=["2024/01/01/[$LATEST]b"], start=T0 + 2, end=T0 + 4
    )
    assert [e.message for e in only_b.events] == ['{"n": 102}', '{"n": 103}']


def test_search_stops_on_its_time_budget_with_a_token(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "SEARCH_WINDOW", 2)
    store.put(GROUP, "s", [(T0 + i, "x") for i in range(20)])
    page = store.search(GROUP, compile_pattern("nothing-matches"), budget_s=0.0)
    assert page.events == [] and page.next is not None


def test_groups_and_streams_listing(store: LogStore) -> None:
    for name in ("/b", "/a/x", "/a/y", "/c"):
        store.create_group(name, now=T0)
    assert not store.create_group("/a/x")
    assert [g.name for g in store.groups()] == ["/a/x", "/a/y", "/b", "/c"]
    assert [g.name for g in store.groups(prefix="/a/")] == ["/a/x", "/a/y"]
    assert [g.name for g in store.groups(after="/a/y", limit=1)] == ["/b"]
    assert [g.name for g in store.groups(contains="A/Y")] == ["/a/y"]
    store.put("/b", "s2", [(T0 + 5, "x")])
    store.put("/b", "s1", [(T0 + 9, "x")])
    store.put("/b", "s3", [(T0 + 1, "x")])
    assert store.create_stream("/b", "s0")
    assert not store.create_stream("/b", "s0")
    assert [s.name for s in store.streams("/b")] == ["s0", "s1", "s2", "s3"]
    assert [s.name for s in store.streams("/b", descending=True, limit=2)] == ["s3", "s2"]
    assert [s.name for s in store.streams("/b", by_last_event=True, descending=True)] == [
        "s1",
        "s2",
        "s3",
        "s0",
    ]
    assert [s.name for s in store.streams("/b", by_last_event=True, after=(T0 + 1, "s3"))] == [
        "s2",
        "s1",
    ]
    assert [s.name for s in store.streams("/b", prefix="s1")] == ["s1"]


def test_delete_stream_and_group(store: LogStore) -> None:
    store.put(GROUP, "s1", [(T0, "aaaa")])
    store.put(GROUP, "s2", [(T0, "bb")])
    assert store.delete_stream(GROUP, "s1")
    assert not store.delete_stream(GROUP, "s1")
    group = store.group(GROUP)
    assert group is not None and group.stored_bytes == 2
    assert [e.message for e in store.events(GROUP)] == ["bb"]
    assert store.delete_group(GROUP)
    assert not store.delete_group(GROUP)
    assert store.group(GROUP) is None and store.events(GROUP) == [] and store.streams(GROUP) == []


def test_retention_sweep(store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_module, "SWEEP_CHUNK", 3)
    now = T0 + 100 * DAY_MS
    store.create_group(GROUP, now=T0)
    store.put(GROUP, "old", [(T0 + i, "expired") for i in range(7)])
    store.put(GROUP, "mixed", [(now - 3 * DAY_MS, "expired"), (now - DAY_MS // 2, "kept")])
    store.put("/other", "s", [(T0, "no retention here")])
    assert store.sweep_retention(now) == 0  # no retention set yet
    assert store.set_retention(GROUP, 1)
    assert not store.set_retention("/missing", 1)
    assert store.sweep_retention(now) == 8
    assert [e.message for e in store.events(GROUP)] == ["kept"]
    assert store.stream(GROUP, "old") is None  # every event expired
    mixed = store.stream(GROUP, "mixed")
    assert mixed is not None and mixed.first_event == now - DAY_MS // 2
    group = store.group(GROUP)
    assert group is not None and group.retention_days == 1 and group.stored_bytes == len("kept")
    assert [e.message for e in store.events("/other")] == ["no retention here"]
    assert store.set_retention(GROUP, None)
    group = store.group(GROUP)
    assert group is not None and group.retention_days is None


def test_a_failing_write_is_dropped_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process writer (used when the writer process is unavailable) drops, never raises.
    store = LogStore(tmp_path / "logs.sqlite3", flush_interval=0.001, writer_process=False)

    def broken(batches: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_write", broken)
    store.emit(GROUP, "s", [(T0, "lost")])
    assert store.flush()
    assert store.dropped == 1
    store.close()


def test_batches_survive_the_writer_process_dying(store: LogStore) -> None:
    """Batches the writer process never acknowledged are written in-process instead."""
    writer = store._writer
    assert writer is not None and writer._child is not None
    writer._child.kill()
    writer._child.wait()
    store.emit(GROUP, "s", [(T0, "after the writer died")])
    assert store.flush()
    assert [e.message for e in store.events(GROUP)] == ["after the writer died"]
