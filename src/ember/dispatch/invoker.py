"""One invocation, start to finish: resolve → throttle → instance → run → account.

After every invocation (and every throttle) the invoker hands an InvocationReport to its
hooks — metrics, usage, traces register there. Hooks run after the result is known, take
microseconds, and are wrapped so that they can never fail the invocation.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ember.dispatch.concurrency import ConcurrencyLimiter
from ember.errors import DiskFull, ServiceError, TooManyRequests
from ember.functions.model import FunctionRecord
from ember.functions.service import FunctionService
from ember.observe import platform_lines, trace_ids
from ember.observe.logs import LogStore
from ember.sandbox.tmp_disk import TmpDiskFull
from ember.worker.instance import Outcome
from ember.worker.pool import Acquired, WorkerPool

log = logging.getLogger(__name__)

TAIL_BYTES = 4096


@dataclass(frozen=True)
class InvokeRequest:
    function: str
    qualifier: str | None
    payload: bytes
    client_context: str | None = None
    trace_id: str | None = None
    tail: bool = False
    request_id: str | None = None  # async retries keep their event's request id, as Lambda's do
    invocation_type: str = "RequestResponse"  # or "Event" (from the async dispatcher)
    enqueued_at: float | None = None  # epoch seconds an async event was accepted (queue wait)


@dataclass(frozen=True)
class InvocationReport:
    """What one invocation did: the figures behind REPORT lines, metrics, usage and traces."""

    request_id: str
    function: str
    version: str
    memory_mb: int
    invocation_type: str
    trace_id: str | None
    received: float  # epoch seconds the invoker got the request
    queue_wait_ms: float | None  # async: accepted → this attempt started
    acquire_ms: float  # getting an instance (a cold start included)
    init_ms: float | None  # the runtime's init, on cold starts
    duration_ms: float  # the handler's run
    billed_ms: int
    max_memory_mb: int
    cold: bool
    outcome: str  # "success" | "error" (function error) | "timeout" | "throttle" | "fault"
    error_type: str | None


Hook = Callable[[InvocationReport], None]


@dataclass(frozen=True)
class InvokeResult:
    request_id: str
    payload: bytes
    function_error: bool
    executed_version: str
    log_tail: str | None
    cold: bool
    log_seq: int = 0  # LogStore sequence number of this invocation's log lines
    trace_id: str | None = None  # _X_AMZN_TRACE_ID of this invocation (Parent: its span)


class Invoker:
    def __init__(
        self,
        functions: FunctionService,
        pool: WorkerPool,
        logs: LogStore,
        limiter: ConcurrencyLimiter,
        region: str,
    ) -> None:
        self.functions = functions
        self.pool = pool
        self.logs = logs
        self.limiter = limiter
        self.region = region
        self.hooks: list[Hook] = []

    def resolve(self, function: str, qualifier: str | None) -> FunctionRecord:
        """The version to run: $LATEST, a version, or an alias's (by its routing weights)."""
        return self.functions.pick(function, qualifier)

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        record = self.resolve(request.function, request.qualifier)
        received = time.time()
        try:
            self.limiter.acquire(record.name)
        except TooManyRequests:
            self._report_throttle(record, request, received)
            raise
        try:
            return await self._run(record, request, received)
        finally:
            self.limiter.release(record.name)

    def _notify(self, report: InvocationReport) -> None:
        for hook in self.hooks:
            try:
                hook(report)
            except Exception:
                log.exception("invocation hook %r failed", hook)

    def _report_throttle(self, record: FunctionRecord, request: InvokeRequest, received: float) -> None:
        self._notify_unrun(record, request, request.request_id or "", received, "throttle", None)

    def _notify_unrun(
        self,
        record: FunctionRecord,
        request: InvokeRequest,
        request_id: str,
        received: float,
        outcome: str,
        error_type: str | None,
    ) -> None:
        """Report an invocation that never ran (throttled, or the platform failed it)."""
        self._notify(
            InvocationReport(
                request_id=request_id,
                function=record.name,
                version=record.version,
                memory_mb=record.memory_size,
                invocation_type=request.invocation_type,
                trace_id=request.trace_id,
                received=received,
                queue_wait_ms=None,
                acquire_ms=0.0,
                init_ms=None,
                duration_ms=0.0,
                billed_ms=0,
                max_memory_mb=0,
                cold=False,
                outcome=outcome,
                error_type=error_type,
            )
        )

    async def _run(self, record: FunctionRecord, request: InvokeRequest, received: float) -> InvokeResult:
        request_id = request.request_id or str(uuid.uuid4())
        task_dir = self.functions.task_dir(record)
        acquire_ms = _now_ms()
        acquire_started = time.perf_counter()
        try:
            acquired = await self.pool.acquire(record, task_dir)
        except TmpDiskFull as exc:
            # No room on the host's disk for this instance's /tmp (after idle instances were
            # reclaimed): a condition of the host that may pass, not a failure of Ember.
            log.warning("could not start an instance of %s: %s", record.name, exc)
            self._notify_fault(record, request, request_id, received)
            raise DiskFull(f"Ember could not start an instance of {record.name}: {exc}") from exc
        except Exception as exc:
            log.exception("could not start an instance of %s", record.name)
            self._notify_fault(record, request, request_id, received)
            raise ServiceError(f"Ember could not start an instance of {record.name}: {exc}") from exc
        instance = acquired.instance
        start_ms = _now_ms()
        acquire_took_ms = (time.perf_counter() - acquire_started) * 1000
        trace = trace_ids.function_header(request.trace_id, request_id, received)
        if instance is None:
            assert acquired.init_failure is not None
            outcome = acquired.init_failure
            stream = acquired.log_stream
            end_ms = start_ms
        else:
            header = {
                "type": "invoke",
                "request_id": request_id,
                "deadline_ms": int(time.time() * 1000) + record.timeout * 1000,
                "invoked_arn": self.functions.arn(
                    record.name,
                    request.qualifier
                    if request.qualifier or ":" not in request.function
                    else self.functions.qualifier_of(request.function),
                ),
                "client_context": request.client_context,
                "trace_id": trace,
            }
            try:
                outcome = await instance.invoke(header, request.payload, float(record.timeout))
            except Exception as exc:
                log.exception("invocation %s of %s failed in the platform", request_id, record.name)
                self.pool.release(record, instance, healthy=False)
                self._notify_fault(record, request, request_id, received)
                raise ServiceError(f"Ember failed while running {record.name}: {exc}") from exc
            end_ms = _now_ms()  # before release: the instance's next output is stamped later
            stream = instance.log_stream
            self.pool.release(record, instance, outcome.healthy)
        seq, lines = self._record_logs(
            record, request_id, stream, acquired, outcome, (acquire_ms, start_ms, end_ms)
        )
        self._notify(
            InvocationReport(
                request_id=request_id,
                function=record.name,
                version=record.version,
                memory_mb=record.memory_size,
                invocation_type=request.invocation_type,
                trace_id=request.trace_id,
                received=received,
                queue_wait_ms=(received - request.enqueued_at) * 1000 if request.enqueued_at else None,
                acquire_ms=acquire_took_ms,
                init_ms=acquired.init_ms if acquired.cold else None,
                duration_ms=outcome.duration_ms,
                billed_ms=platform_lines.billed_ms(outcome.duration_ms),
                max_memory_mb=outcome.max_memory_mb,
                cold=acquired.cold,
                outcome=_outcome_name(outcome),
                error_type=outcome.error_type,
            )
        )
        tail = None
        if request.tail:
            text = "\n".join(lines) + "\n"
            tail = base64.b64encode(text.encode()[-TAIL_BYTES:]).decode()
        return InvokeResult(
            request_id=request_id,
            payload=outcome.payload,
            function_error=outcome.function_error,
            executed_version=record.version,
            log_tail=tail,
            cold=acquired.cold,
            log_seq=seq,
            trace_id=trace,
        )

    def _notify_fault(
        self, record: FunctionRecord, request: InvokeRequest, request_id: str, received: float
    ) -> None:
        self._notify_unrun(record, request, request_id, received, "fault", "ServiceException")

    def _record_logs(
        self,
        record: FunctionRecord,
        request_id: str,
        stream: str,
        acquired: Acquired,
        outcome: Outcome,
        times: tuple[int, int, int],
    ) -> tuple[int, list[str]]:
        """The invocation's log lines (START … REPORT), stored off the hot path; never raises.

        `times` are (instance requested, invocation sent, result received) in ms: INIT_START,
        START and END/REPORT carry them, so every line sorts where it happened.
        """
        try:
            acquire_ms, start_ms, end_ms = times
            json_format = record.log_format == "JSON"
            # SystemLogLevel WARN keeps only the reports of invocations that went wrong.
            quiet = json_format and (record.system_log_level or "INFO").upper() == "WARN"
            events: list[tuple[int, str]] = []
            init_ms = acquired.init_ms if acquired.cold else None
            if acquired.cold:
                runtime = self.functions.runtimes[record.runtime]
                if not json_format:
                    events.append((acquire_ms, platform_lines.init_start(record.runtime, runtime.version, self.region)))
                elif not quiet:
                    events.append(
                        (
                            acquire_ms,
                            platform_lines.init_start_json(
                                acquire_ms, record.runtime, runtime.version, self.region, record.name, record.version
                            ),
                        )
                    )
                if acquired.init_lines is not outcome.lines:
                    events.extend(acquired.init_lines)
            first = len(events)  # where this invocation's own lines begin (the tail's start)
            if not json_format:
                events.append((start_ms, platform_lines.start(request_id, record.version)))
            elif not quiet:
                events.append((start_ms, platform_lines.start_json(start_ms, request_id, record.version)))
            events.extend(outcome.lines)
            if not json_format:
                events.append((end_ms, platform_lines.end(request_id)))
                report = platform_lines.report(
                    request_id,
                    outcome.duration_ms,
                    record.memory_size,
                    outcome.max_memory_mb,
                    init_ms,
                    outcome.status,
                    outcome.error_type,
                )
                events.append((end_ms, report))
            elif not quiet or outcome.status:
                report = platform_lines.report_json(
                    end_ms,
                    request_id,
                    outcome.duration_ms,
                    record.memory_size,
                    outcome.max_memory_mb,
                    init_ms,
                    outcome.status,
                    outcome.error_type,
                )
                events.append((end_ms, report))
            seq = self.logs.emit(record.effective_log_group, stream, events)
            return seq, [text for _, text in events[first:]]
        except Exception:
            log.exception("recording logs for %s failed", request_id)
            return 0, []


def _outcome_name(outcome: Outcome) -> str:
    if not outcome.function_error:
        return "success"
    return "timeout" if outcome.status == "timeout" else "error"


def _now_ms() -> int:
    return int(time.time() * 1000)
