"""Traces: the spans of every invocation, kept locally and exported through OpenTelemetry.

Each invocation (attempt) becomes one span with children for its platform phases:

    <function>            the invocation (parent: the caller's span, when the request named one)
    ├─ queue wait         asynchronous events: accepted → this attempt started
    ├─ claim | cold start getting an instance (a cold start includes the sandbox and init)
    │  └─ init            the runtime's init (imports and module code), cold starts only
    └─ handler            the handler's run

The invoker's hook only appends the InvocationReport to a deque (well under a microsecond on
the event loop). A recorder thread drains it every RECORD_INTERVAL_S: one row per invocation
goes into `traces.sqlite3` (the spans are built from the row when read, with the ids
`trace_ids.span_id` derives), and, when an OTLP endpoint is configured, the spans are built as
OpenTelemetry SDK spans and handed to a BatchSpanProcessor, whose own thread exports them over
OTLP/HTTP (protobuf). The store keeps RETENTION_S and at most MAX_INVOCATIONS rows.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ember.dispatch.invoker import InvocationReport
from ember.observe import trace_ids
from ember.observe.store_writer import StoreWriter
from ember.store.sqlite import connect, migrate

log = logging.getLogger(__name__)

RECORD_INTERVAL_S = 0.1
PRUNE_INTERVAL_S = 60.0
RETENTION_S = 24 * 3600.0
MAX_INVOCATIONS = 100_000  # about 3-5 spans each
SHUTDOWN_FLUSH_S = 2.0  # how long stopping waits for the OTLP collector
MAX_PENDING = 100_000  # reports waiting for the recorder thread; beyond this the oldest are dropped

_COLUMNS = (
    "trace_id, parent_id, request_id, function, version, invocation_type, received, queue_wait_ms,"
    " acquire_ms, init_ms, duration_ms, cold, outcome, error_type"
)


class Invocation(NamedTuple):
    """One invocation attempt as stored: what its spans are built from."""

    trace_id: str
    parent_id: str | None
    request_id: str
    function: str
    version: str
    invocation_type: str
    received: float
    queue_wait_ms: float | None
    acquire_ms: float
    init_ms: float | None
    duration_ms: float
    cold: int
    outcome: str
    error_type: str | None


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    phase: str  # trace_ids.INVOCATION | QUEUE | CLAIM | INIT | HANDLER
    start: float  # epoch seconds
    end: float
    function: str
    request_id: str
    error: str | None = None  # the invocation's outcome when it was not a success
    attributes: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentId": self.parent_id,
            "name": self.name,
            "phase": self.phase,
            "function": self.function,
            "requestId": self.request_id,
            "start": self.start,
            "end": self.end,
            "durationMs": round((self.end - self.start) * 1000, 3),
            "error": self.error,
            "attributes": self.attributes,
        }


def invocation_of(report: InvocationReport) -> Invocation | None:
    """The row for a report; None when the caller asked for the trace not to be sampled."""
    request_id = report.request_id or f"unknown-{report.received!r}"
    context = trace_ids.context_of(report.trace_id, request_id, report.received)
    if not context.sampled:
        return None
    return Invocation(
        context.trace_id,
        context.parent_id,
        request_id,
        report.function,
        report.version,
        report.invocation_type,
        report.received,
        report.queue_wait_ms,
        report.acquire_ms,
        report.init_ms,
        report.duration_ms,
        int(report.cold),
        report.outcome,
        report.error_type,
    )


def spans_of(inv: Invocation) -> list[Span]:
    """The invocation's span and its phases' spans, timed from the received time and durations."""
    rid, received = inv.request_id, inv.received

    def sid(phase: str) -> str:
        return trace_ids.span_id(rid, received, phase)

    root = sid(trace_ids.INVOCATION)
    handler_start = received + inv.acquire_ms / 1000
    end = handler_start + inv.duration_ms / 1000
    start = received - (inv.queue_wait_ms or 0.0) / 1000
    error = None if inv.outcome == "success" else (inv.error_type or inv.outcome)
    attributes: dict[str, Any] = {
        "faas.invocation_id": rid,
        "faas.name": inv.function,
        "faas.version": inv.version,
        "faas.coldstart": bool(inv.cold),
        "faas.trigger": "pubsub" if inv.invocation_type == "Event" else "other",
        "ember.invocation_type": inv.invocation_type,
        "ember.outcome": inv.outcome,
    }
    if inv.error_type:
        attributes["ember.error_type"] = inv.error_type
    spans = [
        Span(
            inv.trace_id,
            root,
            inv.parent_id,
            inv.function,
            trace_ids.INVOCATION,
            start,
            end,
            inv.function,
            rid,
            error,
            attributes,
        )
    ]
    if inv.outcome in ("throttle", "fault"):
        return spans

    def child(
        phase: str,
        name: str,
        begin: float,
        finish: float,
        parent: str = root,
        failed: str | None = None,
    ) -> Span:
        return Span(
            inv.trace_id, sid(phase), parent, name, phase, begin, finish, inv.function, rid, failed
        )

    if inv.queue_wait_ms is not None:
        spans.append(child(trace_ids.QUEUE, "queue wait", start, received))
    claim = child(trace_ids.CLAIM, "cold start" if inv.cold else "claim", received, handler_start)
    spans.append(claim)
    if inv.cold and inv.init_ms is not None:
        spans.append(
            child(
                trace_ids.INIT,
                "init",
                handler_start - inv.init_ms / 1000,
                handler_start,
                claim.span_id,
            )
        )
    spans.append(child(trace_ids.HANDLER, "handler", handler_start, end, failed=error))
    return spans


# -- the local store -----------------------------------------------------------------------


class TraceStore:
    """traces.sqlite3: written by the recorder thread, read by the API (each its own connection)."""

    def __init__(self, path: Path) -> None:
        self._writer = connect(path)
        migrate(self._writer, "traces")
        self._reader = connect(path)
        self._read_lock = threading.Lock()

    def add(self, rows: Sequence[Invocation]) -> None:
        placeholders = ", ".join("?" * len(Invocation._fields))
        with contextlib.closing(self._writer.cursor()) as c:
            c.execute("BEGIN")
            try:
                c.executemany(f"INSERT INTO invocations ({_COLUMNS}) VALUES ({placeholders})", rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def prune(
        self, now: float, retention_s: float = RETENTION_S, keep: int = MAX_INVOCATIONS
    ) -> int:
        c = self._writer
        removed = c.execute(
            "DELETE FROM invocations WHERE received < ?", (now - retention_s,)
        ).rowcount
        row = c.execute(
            "SELECT id FROM invocations ORDER BY id DESC LIMIT 1 OFFSET ?", (keep,)
        ).fetchone()
        if row is not None:
            removed += c.execute("DELETE FROM invocations WHERE id <= ?", (row[0],)).rowcount
        return int(removed)

    def _query(self, sql: str, args: Iterable[Any]) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, tuple(args)).fetchall()

    def invocations(self, trace_id: str) -> list[Invocation]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM invocations WHERE trace_id = ? ORDER BY received, id",
            (trace_id,),
        )
        return [Invocation(*row) for row in rows]

    def recent(self, function: str | None, limit: int) -> list[str]:
        """The trace ids with the most recent invocations (of `function`), newest first."""
        if function is None:
            sql = "SELECT trace_id, MAX(received) AS last FROM invocations GROUP BY trace_id"
            args: tuple[Any, ...] = ()
        else:
            sql = "SELECT trace_id, MAX(received) AS last FROM invocations WHERE function = ? GROUP BY trace_id"
            args = (function,)
        return [row[0] for row in self._query(sql + " ORDER BY last DESC LIMIT ?", (*args, limit))]

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def summary(trace_id: str, invocations: Sequence[Invocation]) -> dict[str, Any]:
    """One line of `ember trace --function`: when, how long, which functions, errors."""
    spans = [spans_of(inv)[0] for inv in invocations]
    start = min(s.start for s in spans)
    end = max(s.end for s in spans)
    functions: list[str] = []
    for inv in invocations:
        if inv.function not in functions:
            functions.append(inv.function)
    return {
        "traceId": trace_id,
        "xrayTraceId": trace_ids.xray_root(trace_id),
        "start": start,
        "durationMs": round((end - start) * 1000, 3),
        "invocations": len(invocations),
        "errors": sum(1 for inv in invocations if inv.outcome != "success"),
        "functions": functions,
    }


# -- OpenTelemetry export ------------------------------------------------------------------


class _OtlpExport:
    """Builds OpenTelemetry SDK spans and hands them to a BatchSpanProcessor (OTLP/HTTP)."""

    def __init__(self, endpoint: str | None) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if endpoint:
            url = endpoint.rstrip("/")
            if not url.endswith("/v1/traces"):
                url += "/v1/traces"
            exporter = OTLPSpanExporter(endpoint=url)
        else:
            exporter = OTLPSpanExporter()  # the OTEL_EXPORTER_OTLP_* variables
        self.exporter = exporter
        self.processor = BatchSpanProcessor(exporter)
        self.resource = Resource.create({"service.name": "ember"})
        self.scope = InstrumentationScope("ember")

    def export(self, spans: Iterable[Span]) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        for span in spans:
            trace = int(span.trace_id, 16)
            context = SpanContext(
                trace, int(span.span_id, 16), is_remote=False, trace_flags=sampled
            )
            parent = None
            if span.parent_id:
                parent = SpanContext(
                    trace, int(span.parent_id, 16), is_remote=True, trace_flags=sampled
                )
            if span.phase == trace_ids.INVOCATION:
                kind = (
                    SpanKind.CONSUMER
                    if span.attributes.get("ember.invocation_type") == "Event"
                    else SpanKind.SERVER
                )
            else:
                kind = SpanKind.INTERNAL
            status = (
                Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET)
            )
            self.processor.on_end(
                ReadableSpan(
                    span.name,
                    context=context,
                    parent=parent,
                    resource=self.resource,
                    attributes={**span.attributes, "ember.phase": span.phase},
                    kind=kind,
                    status=status,
                    start_time=int(span.start * 1e9),
                    end_time=int(span.end * 1e9),
                    instrumentation_scope=self.scope,
                )
            )

    def shutdown(self, timeout_s: float = SHUTDOWN_FLUSH_S) -> None:
        """Send what is queued, waiting at most `timeout_s` (a collector that is down must not
        hold up the server's exit: shutting the exporter down ends its retries)."""
        stopping = threading.Thread(
            target=self.processor.shutdown, name="ember-otlp-stop", daemon=True
        )
        stopping.start()
        stopping.join(timeout_s)
        if stopping.is_alive():
            log.warning(
                "the OTLP collector did not take the last spans in %.0f s; dropped", timeout_s
            )
            self.exporter.shutdown()  # type: ignore[no-untyped-call]


def otlp_configured(endpoint: str | None) -> bool:
    return bool(
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


# -- the recorder --------------------------------------------------------------------------


class TraceRecorder:
    """The invoker hook (`record`) and the thread that stores and exports what it collected."""

    def __init__(
        self, path: Path, otlp_endpoint: str | None = None, writer: StoreWriter | None = None
    ) -> None:
        self.store = TraceStore(path)
        self.otlp = _OtlpExport(otlp_endpoint) if otlp_configured(otlp_endpoint) else None
        # Without an OTLP export, reports are turned into rows and stored by the writer
        # process (off the event loop's GIL); with one, here, since the exporter needs the rows.
        self._writer = writer if self.otlp is None else None
        if self._writer is not None:
            self._writer.register("traces", self._stored, self._store_here)
        self._seq = 0
        self._stored_seq = 0
        self._stored_cond = threading.Condition()
        self._pending: collections.deque[InvocationReport] = collections.deque(maxlen=MAX_PENDING)
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def record(self, report: InvocationReport) -> None:
        """The hook: runs on the event loop after every invocation; only queues the report."""
        self._pending.append(report)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ember-traces", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RECORD_INTERVAL_S):
            self.flush()
            now = time.time()
            if now - self._pruned_at >= PRUNE_INTERVAL_S:
                self._pruned_at = now
                try:
                    with self._drain_lock:  # the writer connection is the flush's too
                        self.store.prune(now)
                except Exception:
                    log.exception("pruning traces failed")

    def _stored(self, seq: int) -> None:
        with self._stored_cond:
            self._stored_seq = max(self._stored_seq, seq)
            self._stored_cond.notify_all()

    def flush(self) -> None:
        """Store (and hand to the exporter) everything recorded so far; never raises."""
        with self._drain_lock:
            reports: list[InvocationReport] = []
            pending = self._pending
            while pending:
                reports.append(pending.popleft())
            if not reports:
                return
            if self._writer is not None:
                self._seq += 1
                seq = self._seq
                if self._writer.send("traces", seq, reports):
                    with self._stored_cond:  # readers flush first: wait until it is stored
                        self._stored_cond.wait_for(lambda: self._stored_seq >= seq, timeout=5)
                    return
            self._store_here(reports)

    def _store_here(self, reports: list[InvocationReport]) -> None:
        """Turn reports into rows, store them and export their spans, in this process."""
        batch: list[Invocation] = []
        for report in reports:
            try:
                row = invocation_of(report)
            except Exception:
                log.exception("could not build a trace from an invocation report")
                continue
            if row is not None:
                batch.append(row)
        if not batch:
            return
        try:
            self.store.add(batch)
        except Exception:
            log.exception("storing %d traces failed", len(batch))
        if self.otlp is not None:
            try:
                self.otlp.export(span for inv in batch for span in spans_of(inv))
            except Exception:
                log.exception("exporting %d traces failed", len(batch))

    def trace(self, trace_id: str) -> list[Span]:
        return [span for inv in self.store.invocations(trace_id) for span in spans_of(inv)]

    def recent(self, function: str | None, limit: int) -> list[dict[str, Any]]:
        found = []
        for trace_id in self.store.recent(function, limit):
            invocations = self.store.invocations(trace_id)
            if invocations:
                found.append(summary(trace_id, invocations))
        return found

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        if self.otlp is not None:
            with contextlib.suppress(Exception):
                self.otlp.shutdown()
        self.store.close()


__all__ = ["Invocation", "Span", "TraceRecorder", "TraceStore", "spans_of"]
