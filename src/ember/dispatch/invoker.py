"""One invocation, start to finish: resolve → throttle → instance → run → account.

After every invocation (and every throttle) the invoker hands an InvocationReport to its
hooks — metrics, usage, traces register there. Hooks run after the result is known, take
microseconds, and are wrapped so that they can never fail the invocation.

The caller gets its answer as soon as the runtime's result frame arrives, but the invocation is
accounted — END and REPORT lines, hooks, its concurrency slot given back — only when its billed
duration is settled (`worker/instance.py:Instance.settle`): when the instance is frozen (after
`freeze_delay_s`), reused, or destroyed, whichever comes first, or at once when the caller wants
the log tail (`LogType: Tail`) or is the async dispatcher (which waits for the logs).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ember.dispatch.concurrency import ConcurrencyLimiter
from ember.errors import DiskFull, ServiceError, TooManyRequests
from ember.functions.model import FunctionRecord
from ember.functions.service import FunctionService
from ember.observe import platform_lines, trace_ids
from ember.observe.logs import LogStore
from ember.sandbox.tmp_disk import TmpDiskFull
from ember.worker.instance import Line, Outcome, Settled
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
        # The previous invocation of the instance this one will reuse is accounted first.
        self.pool.settle_next(record)
        try:
            self._take_slot(record.name)
        except TooManyRequests:
            self._report_throttle(record, request, received)
            raise
        slot = _Slot(self.limiter, record.name)
        try:
            return await self._run(record, request, received, slot)
        finally:
            if not slot.deferred:
                slot.release()

    def _take_slot(self, function: str) -> None:
        try:
            self.limiter.acquire(function)
        except TooManyRequests:
            # Slots may be held by invocations already answered whose instances are idle but not
            # settled yet: settle them and try once more.
            if not self.pool.settle_function(function):
                raise
            self.limiter.acquire(function)

    def _notify(self, report: InvocationReport) -> None:
        for hook in self.hooks:
            try:
                hook(report)
            except Exception:
                log.exception("invocation hook %r failed", hook)

    def _report_throttle(
        self, record: FunctionRecord, request: InvokeRequest, received: float
    ) -> None:
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

    async def _run(
        self, record: FunctionRecord, request: InvokeRequest, received: float, slot: _Slot
    ) -> InvokeResult:
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
            raise ServiceError(
                f"Ember could not start an instance of {record.name}: {exc}"
            ) from exc
        instance = acquired.instance
        start_ms = _now_ms()
        acquire_took_ms = (time.perf_counter() - acquire_started) * 1000
        trace = trace_ids.function_header(request.trace_id, request_id, received)
        if instance is None:
            assert acquired.init_failure is not None
            account = _Accounting(
                record,
                request,
                request_id,
                received,
                acquired,
                acquired.init_failure,
                acquired.log_stream,
                acquire_ms,
                start_ms,
                acquire_took_ms,
                slot,
                end_ms=start_ms,
            )
            self._account(account, None)
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
            account = _Accounting(
                record,
                request,
                request_id,
                received,
                acquired,
                outcome,
                instance.log_stream,
                acquire_ms,
                start_ms,
                acquire_took_ms,
                slot,
            )
            settlement = outcome.settlement
            if settlement is None:
                # Before release: the instance's next output is stamped later.
                account.end_ms = _now_ms()
                self.pool.release(record, instance, outcome.healthy)
                self._account(account, None)
            else:
                slot.deferred = True  # given back when the invocation is accounted
                settlement.when_settled(lambda settled: self._account(account, settled))
                self.pool.release(record, instance, outcome.healthy)
                if request.tail or request.invocation_type == "Event":
                    instance.settle(early=True, check_runtime=False)  # REPORT wanted now
        tail = None
        if request.tail:
            text = "\n".join(account.lines) + "\n"
            tail = base64.b64encode(text.encode()[-TAIL_BYTES:]).decode()
        return InvokeResult(
            request_id=request_id,
            payload=account.outcome.payload,
            function_error=account.outcome.function_error,
            executed_version=record.version,
            log_tail=tail,
            cold=acquired.cold,
            log_seq=account.seq,
            trace_id=trace,
        )

    def _account(self, account: _Accounting, settled: Settled | None) -> None:
        """Log the invocation's lines and REPORT, tell the hooks, give its slot back (once its
        billed duration is final); never raises."""
        try:
            outcome = account.outcome
            duration_ms = outcome.duration_ms if settled is None else settled.duration_ms
            end_ms = account.end_ms or _now_ms()
            late: list[Line] = []
            if settled is not None:
                end_ms, late = settled.end_ms, settled.lines
            record, acquired = account.record, account.acquired
            account.seq, account.lines = self._record_logs(
                record,
                account.request_id,
                account.stream,
                acquired,
                outcome,
                (account.acquire_ms, account.start_ms, end_ms),
                duration_ms,
                late,
            )
            request = account.request
            self._notify(
                InvocationReport(
                    request_id=account.request_id,
                    function=record.name,
                    version=record.version,
                    memory_mb=record.memory_size,
                    invocation_type=request.invocation_type,
                    trace_id=request.trace_id,
                    received=account.received,
                    queue_wait_ms=(account.received - request.enqueued_at) * 1000
                    if request.enqueued_at
                    else None,
                    acquire_ms=account.acquire_took_ms,
                    init_ms=acquired.init_ms if acquired.cold else None,
                    duration_ms=duration_ms,
                    billed_ms=platform_lines.billed_ms(duration_ms),
                    max_memory_mb=outcome.max_memory_mb,
                    cold=acquired.cold,
                    outcome=_outcome_name(outcome),
                    error_type=outcome.error_type,
                )
            )
        except Exception:
            log.exception("accounting for invocation %s failed", account.request_id)
        finally:
            account.slot.release()

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
        duration_ms: float,
        late: list[Line],
    ) -> tuple[int, list[str]]:
        """The invocation's log lines (START … REPORT), stored off the hot path; never raises.

        `times` are (instance requested, invocation sent, billed duration ended) in ms:
        INIT_START, START and END/REPORT carry them, so every line sorts where it happened.
        `late` is output that arrived after the result, before the duration was settled. Lines
        the platform writes are marked as its own (`True`), the function's output never is.
        """
        try:
            acquire_ms, start_ms, end_ms = times
            json_format = record.log_format == "JSON"
            # SystemLogLevel WARN keeps only the reports of invocations that went wrong.
            quiet = json_format and (record.system_log_level or "INFO").upper() == "WARN"
            events: list[Line] = []
            init_ms = acquired.init_ms if acquired.cold else None
            if acquired.cold:
                runtime = self.functions.runtimes[record.runtime]
                if not json_format:
                    line = platform_lines.init_start(record.runtime, runtime.version, self.region)
                    events.append((acquire_ms, line, True))
                elif not quiet:
                    line = platform_lines.init_start_json(
                        acquire_ms,
                        record.runtime,
                        runtime.version,
                        self.region,
                        record.name,
                        record.version,
                    )
                    events.append((acquire_ms, line, True))
                if acquired.init_lines is not outcome.lines:
                    events.extend(acquired.init_lines)
            first = len(events)  # where this invocation's own lines begin (the tail's start)
            if not json_format:
                events.append((start_ms, platform_lines.start(request_id, record.version), True))
            elif not quiet:
                events.append(
                    (
                        start_ms,
                        platform_lines.start_json(start_ms, request_id, record.version),
                        True,
                    )
                )
            events.extend(outcome.lines)
            events.extend(late)
            # END and REPORT close the invocation's lines: never stamped before the last of them
            # (e.g. the "[ember] N lines dropped" notice, stamped when the output was taken),
            # or a reader sorting by time would see it after the REPORT.
            for lines in (outcome.lines, late):
                if lines:
                    end_ms = max(end_ms, lines[-1][0])
            if not json_format:
                events.append((end_ms, platform_lines.end(request_id), True))
                report = platform_lines.report(
                    request_id,
                    duration_ms,
                    record.memory_size,
                    outcome.max_memory_mb,
                    init_ms,
                    outcome.status,
                    outcome.error_type,
                )
                events.append((end_ms, report, True))
            elif not quiet or outcome.status:
                report = platform_lines.report_json(
                    end_ms,
                    request_id,
                    duration_ms,
                    record.memory_size,
                    outcome.max_memory_mb,
                    init_ms,
                    outcome.status,
                    outcome.error_type,
                )
                events.append((end_ms, report, True))
            seq = self.logs.emit(record.effective_log_group, stream, events)
            return seq, [text for _, text, _ in events[first:]]
        except Exception:
            log.exception("recording logs for %s failed", request_id)
            return 0, []


def _outcome_name(outcome: Outcome) -> str:
    if not outcome.function_error:
        return "success"
    return "timeout" if outcome.status == "timeout" else "error"


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Slot:
    """An invocation's concurrency slot, given back exactly once."""

    __slots__ = ("deferred", "function", "held", "limiter")

    def __init__(self, limiter: ConcurrencyLimiter, function: str) -> None:
        self.limiter = limiter
        self.function = function
        self.held = True
        self.deferred = False  # the invocation's accounting gives it back, not invoke()

    def release(self) -> None:
        if self.held:
            self.held = False
            self.limiter.release(self.function)


@dataclass
class _Accounting:
    """What an invocation's END/REPORT lines and hooks need, kept until it is settled."""

    record: FunctionRecord
    request: InvokeRequest
    request_id: str
    received: float
    acquired: Acquired
    outcome: Outcome
    stream: str
    acquire_ms: int
    start_ms: int
    acquire_took_ms: float
    slot: _Slot
    end_ms: int = 0  # for an outcome that needs no settlement: when it ended
    seq: int = 0  # the LogStore sequence number of its lines, once recorded
    lines: list[str] = field(default_factory=list)  # its own lines (START on), once recorded
