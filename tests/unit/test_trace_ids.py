"""Trace ids: X-Ray headers, W3C traceparent, the mapping between them, derived span ids."""

from __future__ import annotations

import time
from pathlib import Path

from ember.dispatch.invoker import InvocationReport
from ember.observe import trace_ids
from ember.observe.traces import RETENTION_S, TraceRecorder, invocation_of, spans_of

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
W3C = "5759e988bd862e3fe1be46a994272793"


def test_xray_header_parses() -> None:
    context = trace_ids.parse_xray(f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1")
    assert context == trace_ids.TraceContext(W3C, "53995c3f42cd8ad8", True)
    assert context.root == ROOT
    assert context.header() == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"


def test_xray_header_variants() -> None:
    # order, case, spaces and extra fields (Lineage) do not matter; Sampled=0 is kept
    context = trace_ids.parse_xray(f"Sampled=0; Lineage=a87bd80c:1 ;root={ROOT.upper()}")
    assert context == trace_ids.TraceContext(W3C, None, False)
    assert context.header() == f"Root={ROOT};Sampled=0"
    # a bad Parent is dropped, the trace kept
    assert trace_ids.parse_xray(f"Root={ROOT};Parent=xyz") == trace_ids.TraceContext(W3C, None)


def test_bad_xray_headers() -> None:
    for bad in (
        "",
        "Root=",
        "Root=2-5759e988-bd862e3fe1be46a994272793",
        "Root=1-5759e988-bd86",
        "Root=1-00000000-000000000000000000000000",
        "Parent=53995c3f42cd8ad8",
        "garbage",
    ):
        assert trace_ids.parse_xray(bad) is None, bad


def test_traceparent_parses_and_maps_to_xray() -> None:
    context = trace_ids.parse_traceparent(f"00-{W3C}-53995c3f42cd8ad8-01")
    assert context == trace_ids.TraceContext(W3C, "53995c3f42cd8ad8", True)
    assert context.root == ROOT
    assert context.traceparent() == f"00-{W3C}-53995c3f42cd8ad8-01"
    assert trace_ids.parse_traceparent(f"00-{W3C}-53995c3f42cd8ad8-00").sampled is False  # type: ignore[union-attr]
    # a future version may carry more fields
    assert trace_ids.parse_traceparent(f"01-{W3C}-53995c3f42cd8ad8-01-extra") is not None


def test_bad_traceparents() -> None:
    for bad in (
        f"ff-{W3C}-53995c3f42cd8ad8-01",
        f"00-{'0' * 32}-53995c3f42cd8ad8-01",
        f"00-{W3C}-{'0' * 16}-01",
        f"00-{W3C}-53995c3f42cd8ad8-01-extra",
        "00-abc-def-01",
        "",
    ):
        assert trace_ids.parse_traceparent(bad) is None, bad


def test_from_headers_prefers_xray_then_w3c_else_new() -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    both = trace_ids.from_headers(
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1", f"00-{other}-b7ad6b7169203331-01"
    )
    assert both == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    w3c = trace_ids.from_headers(None, f"00-{other}-b7ad6b7169203331-01")
    assert w3c == "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"
    made = trace_ids.parse_xray(trace_ids.from_headers("nonsense", None))
    assert made is not None and made.parent_id is None and made.sampled
    assert abs(int(made.trace_id[:8], 16) - time.time()) < 5  # X-Ray: the epoch in the first 8


def test_normalize_accepts_every_notation() -> None:
    for text in (ROOT, W3C, W3C.upper(), f"Root={ROOT};Sampled=1", f"00-{W3C}-53995c3f42cd8ad8-01"):
        assert trace_ids.normalize_trace_id(text) == W3C, text
    assert trace_ids.normalize_trace_id("1-xyz") is None


def test_derived_span_ids_are_stable_and_distinct() -> None:
    a = trace_ids.span_id("req", 1700000000.123456, trace_ids.INVOCATION)
    assert a == trace_ids.span_id("req", 1700000000.123456, trace_ids.INVOCATION)
    assert len(a) == 16 and int(a, 16)
    others = {
        trace_ids.span_id("req", 1700000000.123456, p)
        for p in (trace_ids.QUEUE, trace_ids.CLAIM, trace_ids.INIT, trace_ids.HANDLER)
    }
    others.add(trace_ids.span_id("req", 1700000000.5, trace_ids.INVOCATION))  # a retry
    assert a not in others and len(others) == 5


def test_function_header_names_the_invocation_span_as_parent() -> None:
    header = trace_ids.function_header(f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1", "req", 1.5)
    assert header == f"Root={ROOT};Parent={trace_ids.span_id('req', 1.5, 'invocation')};Sampled=1"
    # no trace given (e.g. an event source): one derived from the request, the same each time
    made = trace_ids.function_header(None, "req", 1.5)
    assert made == trace_ids.function_header(None, "req", 1.5)
    assert made.startswith("Root=1-00000001-")


def _report(**changes: object) -> InvocationReport:
    fields: dict[str, object] = dict(
        request_id="req",
        function="fn",
        version="$LATEST",
        memory_mb=128,
        invocation_type="Event",
        trace_id=f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1",
        received=1000.0,
        queue_wait_ms=50.0,
        acquire_ms=10.0,
        init_ms=6.0,
        duration_ms=2.0,
        billed_ms=2,
        max_memory_mb=20,
        cold=True,
        outcome="success",
        error_type=None,
    )
    fields.update(changes)
    return InvocationReport(**fields)  # type: ignore[arg-type]


def test_spans_of_an_async_cold_invocation() -> None:
    row = invocation_of(_report())
    assert row is not None
    spans = {s.phase: s for s in spans_of(row)}
    inv = spans["invocation"]
    assert inv.parent_id == "53995c3f42cd8ad8" and inv.trace_id == W3C
    assert inv.span_id == trace_ids.span_id("req", 1000.0, "invocation")
    assert (inv.start, inv.end) == (999.95, 1000.012)
    assert spans["queue"].start == 999.95 and spans["queue"].end == 1000.0
    assert spans["claim"].name == "cold start" and spans["claim"].end == 1000.01
    assert spans["init"].parent_id == spans["claim"].span_id
    assert round(spans["init"].start, 6) == 1000.004
    assert spans["handler"].start == 1000.01 and spans["handler"].end == 1000.012
    for phase in ("queue", "claim", "handler"):
        assert spans[phase].parent_id == inv.span_id


def test_spans_of_a_warm_failed_sync_invocation_and_unsampled() -> None:
    row = invocation_of(
        _report(
            invocation_type="RequestResponse",
            queue_wait_ms=None,
            cold=False,
            init_ms=None,
            outcome="error",
            error_type="ValueError",
        )
    )
    assert row is not None
    spans = spans_of(row)
    assert [s.name for s in spans] == ["fn", "claim", "handler"]
    assert spans[0].error == "ValueError" and spans[2].error == "ValueError"
    assert invocation_of(_report(trace_id=f"Root={ROOT};Sampled=0")) is None


def test_the_store_finds_recent_traces_and_prunes(tmp_path: Path) -> None:
    recorder = TraceRecorder(tmp_path / "traces.sqlite3")
    try:
        now = time.time()
        other = "1-5759e988-00000000000000000000beef"
        recorder.record(_report(request_id="old", received=now - 2 * RETENTION_S))
        recorder.record(_report(request_id="a", received=now - 2, function="a"))
        recorder.record(_report(request_id="b", received=now - 1, function="b"))
        recorder.record(
            _report(request_id="c", received=now, function="a", trace_id=f"Root={other};Sampled=1")
        )
        recorder.flush()
        assert [s["xrayTraceId"] for s in recorder.recent("a", 10)] == [other, ROOT]
        assert [s["xrayTraceId"] for s in recorder.recent("b", 10)] == [ROOT]
        assert recorder.recent(None, 1)[0]["xrayTraceId"] == other
        whole = recorder.recent("b", 1)[0]
        assert whole["functions"] == ["fn", "a", "b"] and whole["invocations"] == 3
        assert recorder.store.prune(now) == 1  # older than the retention period
        assert recorder.store.prune(now, keep=2) == 1  # beyond the count: the oldest go first
        assert [inv.request_id for inv in recorder.store.invocations(W3C)] == ["b"]
    finally:
        recorder.close()
