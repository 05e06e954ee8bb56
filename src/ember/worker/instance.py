"""One function instance: a sandbox running the runtime for one function version.

It speaks the worker protocol (frames over the instance socket), collects the sandbox's
output from its log pipe, and turns every way an invocation can end into an Outcome:
a result, a function error, a timeout, an out-of-memory kill or a runtime exit. An instance
that failed in any way is destroyed, never reused.

The function runs in the runtime's process, so it can write frames on the channel and print the
end-of-output marker itself. Nothing it sends is trusted beyond its own invocation:
- `FrameChannel` accepts only the one frame the platform is waiting for (anything else destroys
  the instance, even between invocations) and never queues a frame for a later invocation;
- `LogCollector` bounds each invocation's output in bytes *and* lines, and looks only for the
  current invocation's marker;
- the result frame ends the response, not the bill: an invocation's duration is settled later
  (`Instance.settle`), from the cgroup's CPU usage, when the platform freezes or reuses the sandbox.

The I/O is plain asyncio protocols with futures and timer handles (no tasks, no wait_for):
this is the warm-invoke hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from ember.sandbox.sandbox import Sandbox
from ember.worker.api_relay import SandboxRelay

log = logging.getLogger(__name__)

HEADER = struct.Struct("!II")
MAX_HEADER = 1024 * 1024
MAX_LINE = 256 * 1024  # longer lines become several events of this size (CloudWatch's event limit)
# An invocation's output: each line costs its bytes plus LINE_OVERHEAD (its newline, and what its
# stored record costs beyond the text: ~275 bytes a row in logs.sqlite3 with its index entries,
# ~150 in memory on the way there), so a flood of empty lines is bounded like one of long lines.
OUTPUT_BUDGET = 4 * 1024 * 1024
LINE_OVERHEAD = 256
MARKER_GRACE_S = 1.0  # how long output may trail its result frame
# CPU a sandbox may use after its result and still count as idle: the runtime's few microseconds
# between writing the result and blocking on its next read, with a wide margin.
IDLE_CPU_SLACK_NS = 1_000_000

# How often the freeze timer looks again at a runtime still `running` (runnable: on its way to its
# read, or not given the CPU — its quota spent, the machine busy) after its result before settling
# on the CPU usage alone, each time after another freeze delay: 40 x 5 ms spans two CFS periods.
SETTLE_PATIENCE = 40

# What /proc/<pid>/syscall says of the runtime's main thread. An idle Python runtime is blocked
# in recvfrom on its channel (a runtime that waits otherwise, e.g. in epoll_wait, needs its own).
WAITING, RUNNING, ELSEWHERE = "waiting", "running", "elsewhere"
_READ_SYSCALLS = {  # read, readv, recvfrom, recvmsg
    "x86_64": frozenset({0, 19, 45, 47}),
    "aarch64": frozenset({63, 65, 207, 212}),
}.get(platform.machine(), frozenset({0, 19, 45, 47}))

Line = tuple[int, str, bool]  # (ms since the epoch, text, written by the platform)


class ProtocolViolation(Exception):
    pass


class ChannelClosed(Exception):
    pass


@dataclass
class Settled:
    """How an answered invocation's billed duration ended (see `Instance.settle`)."""

    duration_ms: float
    end_ms: int  # ms since the epoch
    lines: list[Line]  # output that arrived after the result and before the settlement
    busy: bool  # the sandbox kept working after its result: the duration ran on


class Settlement:
    """An invocation that has its result but not yet its final duration."""

    __slots__ = ("callback", "cpu_ns", "ended", "ended_ms", "patience", "settled", "started")

    def __init__(self, started: float, ended: float, ended_ms: int, cpu_ns: int | None) -> None:
        self.started = started  # monotonic: the invoke frame was sent
        self.ended = ended  # monotonic: the result (and its output) was complete
        self.ended_ms = ended_ms
        self.cpu_ns = cpu_ns  # the cgroup's CPU usage then (None: unknown, never held against it)
        self.callback: Callable[[Settled], None] | None = None
        self.settled: Settled | None = None
        self.patience = SETTLE_PATIENCE

    def when_settled(self, callback: Callable[[Settled], None]) -> None:
        """Run `callback` once the duration is final (at once if it already is)."""
        if self.settled is not None:
            callback(self.settled)
        else:
            self.callback = callback

    def deliver(self, settled: Settled) -> None:
        self.settled = settled
        callback, self.callback = self.callback, None
        if callback is not None:
            callback(settled)


@dataclass
class Outcome:
    payload: bytes
    function_error: bool = False
    error_type: str | None = None
    status: str | None = None  # REPORT's "Status: timeout | error"
    duration_ms: float = 0.0  # up to the result; a settlement may extend it
    lines: list[Line] = field(default_factory=list)
    healthy: bool = True  # False: the instance must be destroyed
    max_memory_mb: int = 0
    settlement: Settlement | None = None  # None: the duration is final already


def error_payload(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorType": error_type, "errorMessage": message})


Frame = tuple[dict[str, Any], bytes | None]  # body None: over the response limit (discarded)


class FrameChannel(asyncio.Protocol):
    """The platform's end of the instance socket: parses `!II` + JSON header + body frames.

    Strictly one frame per question: after start the runtime may send `ready` or `init_error`,
    after each `invoke` one `result` naming that invocation's request id, and nothing else. A
    frame nobody waits for, of the wrong type or for another request, a header over MAX_HEADER
    or not a JSON object is a protocol violation: the channel fails for good (no later frame is
    ever delivered) and, when no invocation is waiting, `on_failure` runs so that the instance
    is destroyed at once. A body over the response limit is counted and discarded, never buffered.
    """

    def __init__(
        self, response_limit: int, on_failure: Callable[[Exception], None] | None = None
    ) -> None:
        self.response_limit = response_limit
        self.on_failure = on_failure
        self.buffer = bytearray()
        self.pending: tuple[dict[str, Any], int] | None = None  # header read, body to come
        self.skipping = 0  # bytes of an oversized body still to discard
        self.expecting: tuple[str, ...] = ("ready", "init_error")  # frame types awaited now
        self.request_id: str | None = None  # the request a `result` must name
        self.frame: Frame | None = None  # the awaited frame, when it came before its waiter
        self.waiter: asyncio.Future[Frame] | None = None
        self.failure: Exception | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        self.buffer += data
        try:
            self._parse()
        except ProtocolViolation as violation:
            self.buffer.clear()
            self._fail(violation)

    def _parse(self) -> None:
        buf = self.buffer
        while True:
            if self.skipping:
                dropped = min(self.skipping, len(buf))
                del buf[:dropped]
                self.skipping -= dropped
                if self.skipping:
                    return
                assert self.pending is not None
                self._deliver((self.pending[0], None))
                self.pending = None
                continue
            if self.pending is None:
                if len(buf) < HEADER.size:
                    return
                header_len, body_len = HEADER.unpack_from(buf)
                if header_len > MAX_HEADER:
                    raise ProtocolViolation("runtime sent an oversized frame header")
                if not self.expecting:  # checked before waiting for the header to arrive
                    raise ProtocolViolation("runtime sent a frame nobody asked for")
                if len(buf) < HEADER.size + header_len:
                    return
                try:
                    header = orjson.loads(bytes(buf[HEADER.size : HEADER.size + header_len]))
                except orjson.JSONDecodeError:
                    raise ProtocolViolation("runtime sent a malformed frame header") from None
                if not isinstance(header, dict):
                    raise ProtocolViolation("runtime sent a malformed frame header")
                self._check(header)
                del buf[: HEADER.size + header_len]
                self.pending = (header, body_len)
                if body_len > self.response_limit:
                    self.skipping = body_len
                    continue
            header, body_len = self.pending
            if len(buf) < body_len:
                return
            body = bytes(buf[:body_len])
            del buf[:body_len]
            self.pending = None
            self._deliver((header, body))

    def _check(self, header: dict[str, Any]) -> None:
        """The frame must be the one awaited; then nothing more is, until the next question."""
        kind = header.get("type")
        if kind not in self.expecting:
            raise ProtocolViolation(
                f"runtime sent a {str(kind)[:40]!r} frame where {self.expecting[0]!r} was expected"
            )
        if kind == "result" and header.get("request_id") != self.request_id:
            raise ProtocolViolation("runtime sent a result for another request")
        self.expecting = ()

    def _deliver(self, frame: Frame) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(frame)
        else:
            self.frame = frame  # the one awaited frame (see _check): taken by next_frame()

    def _fail(self, error: Exception) -> None:
        self.failure = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_exception(error)
        elif self.on_failure is not None:
            self.on_failure(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.failure is None:
            self._fail(ChannelClosed("the runtime closed its channel"))

    def expect_result(self, request_id: str) -> None:
        self.expecting = ("result",)
        self.request_id = request_id
        self.frame = None

    def next_frame(self) -> asyncio.Future[Frame]:
        """A future for the awaited frame (raises ChannelClosed / ProtocolViolation)."""
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        if self.frame is not None:
            future.set_result(self.frame)
            self.frame = None
        elif self.failure is not None:
            future.set_exception(self.failure)
        else:
            self.waiter = future
        return future

    def send(self, header: dict[str, Any], body: bytes) -> None:
        assert self.transport is not None
        data = orjson.dumps(header)
        self.transport.write(HEADER.pack(len(data), len(body)) + data + body)


class LogCollector(asyncio.Protocol):
    """Reads the sandbox's stdout/stderr pipe and splits it into lines (log events).

    Output is bounded per phase (start-up, then each invocation from its invoke frame on): every
    line costs its bytes plus LINE_OVERHEAD, and once `budget` is spent the rest is only counted —
    with bytes.count, no Python work per line — and reported as one "[ember] N lines dropped"
    platform line. The runtime ends each phase's output with `<marker> <token>` ("init", then the
    request id); only the current phase's token is looked for, so lines imitating the marker are
    ordinary output and nothing is remembered about them.
    """

    def __init__(self, marker: str, budget: int = OUTPUT_BUDGET) -> None:
        self.marker = marker.encode()
        self.budget = budget
        self.partial = bytearray()  # the line being received (under budget)
        self.open_line = False  # over budget: a line has begun whose end is still to come
        self.lines: list[Line] = []
        self.spent = 0
        self.dropped = 0
        self.pattern = b""  # `<marker> <token>\n` of the current phase
        self.marked = False  # the current phase's marker has arrived
        self.tail = b""  # the phase's last bytes, which a marker split between reads starts in
        self.waiter: asyncio.Future[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.begin("init")

    def begin(self, token: str) -> None:
        """A new phase: its output is bounded afresh and ends at `<marker> <token>`."""
        self.spent = 0
        self.pattern = self.marker + b" " + token.encode() + b"\n"
        self.marked = False
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        now = int(time.time() * 1000)
        if not self.marked:
            # Searched with the stream's last bytes in front, so a marker split between two
            # reads is found too; `at` < 0: it began in bytes already taken as output.
            head = self.tail
            probe = head + data if head else data
            at = probe.find(self.pattern)
            self.tail = probe[1 - len(self.pattern) :]
            if at >= 0:
                at -= len(head)
                if at >= 0:
                    self._output(now, data[:at])
                elif len(self.partial) >= -at:
                    del self.partial[len(self.partial) + at :]
                # The marker ends the line it is on: output a child process left unterminated
                # (the runtime cannot see it) may stand before it.
                self._end_line(now)
                self.marked = True
                if self.waiter is not None:
                    _resolve(self.waiter)
                data = data[at + len(self.pattern) :]
        self._output(now, data)

    def _output(self, now: int, data: bytes) -> None:
        start = 0
        while self.spent < self.budget:
            end = data.find(b"\n", start)
            if end < 0:
                self.partial += data[start:]
                while len(self.partial) >= MAX_LINE and self.spent < self.budget:
                    self._add(now, bytes(self.partial[:MAX_LINE]))
                    del self.partial[:MAX_LINE]
                if self.spent >= self.budget and self.partial:
                    self.partial.clear()
                    self.open_line = True
                return
            if self.partial:
                self.partial += data[start:end]
                self._add(now, bytes(self.partial))
                self.partial.clear()
            else:
                self._add(now, data[start:end])
            start = end + 1
        self._count(data, start)

    def _count(self, data: bytes, start: int) -> None:
        """Over budget: count the lines that end here, remember whether one is still open."""
        if start >= len(data):
            return
        ended = data.count(b"\n", start)
        if ended:
            self.dropped += ended
            self.open_line = not data.endswith(b"\n")
        else:
            self.open_line = True

    def _add(self, now: int, raw: bytes) -> None:
        cost = len(raw) + LINE_OVERHEAD
        if self.spent + cost > self.budget:
            self.spent = self.budget
            self.dropped += 1
            return
        self.spent += cost
        self.lines.append((now, raw.decode(errors="replace"), False))

    def _end_line(self, now: int) -> None:
        if self.partial:
            self._add(now, bytes(self.partial))
            self.partial.clear()
        elif self.open_line:
            self.dropped += 1
        self.open_line = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_line(int(time.time() * 1000))
        _resolve(self.closed)
        if self.waiter is not None:
            _resolve(self.waiter)

    async def wait_marked(self, timeout: float) -> None:
        """Until the current phase's end-of-output marker arrives (bounded)."""
        if self.marked or self.closed.done():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiter = waiter
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> list[Line]:
        """The lines collected since the last take, and a platform line for those dropped."""
        lines, self.lines = self.lines, []
        if self.dropped:
            lines.append(
                (
                    int(time.time() * 1000),
                    f"[ember] {self.dropped} lines dropped: output over {self.budget} bytes"
                    f" (each line counts {LINE_OVERHEAD} bytes more than its text)",
                    True,
                )
            )
            self.dropped = 0
        return lines


def _look_again(state: str | None, grew: bool) -> bool:
    """Whether a settlement should wait another freeze delay before judging the runtime: it is
    runnable but did no work (on its way to its read, or without a CPU), or the sandbox worked
    and the runtime is not at its read yet (in Python, a thread busy after the handler returned
    holds the GIL the runtime needs to get back to its read)."""
    if state == RUNNING:
        return True
    return grew and state == ELSEWHERE


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[Frame]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Instance:
    def __init__(self, sandbox: Sandbox, marker: str, log_stream: str, response_limit: int) -> None:
        self.sandbox = sandbox
        self.marker = marker
        self.log_stream = log_stream
        self.response_limit = response_limit
        self.created = time.monotonic()
        self.last_used = self.created
        self.invocations = 0
        self.frozen = False
        self._freeze_timer: asyncio.TimerHandle | None = None
        self.api_server: SandboxRelay | None = None  # relays the sandbox's 127.0.0.1:<port>
        self._channel: FrameChannel | None = None
        self._logs: LogCollector | None = None
        self._log_transport: asyncio.ReadTransport | None = None
        self._unsettled: Settlement | None = None
        self._syscall_fd: int | None = None  # /proc/<runtime pid>/syscall, opened when first read
        self._watch_cpu_ns: int | None = None  # settled early: the CPU usage then, till the freeze
        self._watch_patience = 0
        self._freeze_delay = 0.005
        self._destroying = False
        # Called once when the instance destroys itself (a protocol violation or a sandbox found
        # working after its result), so that its pool forgets it; the pool's own destroys unset it.
        self.on_destroyed: Callable[[Instance], None] | None = None

    @property
    def id(self) -> str:
        return self.sandbox.id

    @property
    def destroyed(self) -> bool:
        return self._destroying or self.sandbox.destroyed

    @property
    def unsettled(self) -> bool:
        return self._unsettled is not None

    async def _frame(self, timeout: float) -> Frame:
        """The next frame, or TimeoutError after `timeout` seconds."""
        assert self._channel is not None
        future = self._channel.next_frame()
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _channel_failed(self, error: Exception) -> None:
        """The runtime broke the protocol, or went away, with no invocation waiting on it."""
        if not self.destroyed:
            log.warning("instance %s destroyed: %s", self.id, error)
            self.destroy()

    async def start(self, timeout: float) -> Outcome | None:
        """Connect and wait for the runtime to initialise. None when ready; else the failure."""
        loop = asyncio.get_running_loop()
        self.sandbox.channel.setblocking(False)
        _, self._channel = await loop.connect_accepted_socket(
            lambda: FrameChannel(self.response_limit, self._channel_failed), self.sandbox.channel
        )
        pipe = os.fdopen(self.sandbox.log_fd, "rb", buffering=0)
        transport, protocol = await loop.connect_read_pipe(lambda: LogCollector(self.marker), pipe)
        self._log_transport, self._logs = transport, protocol
        # Opened now, while the runtime starts (~20 µs), but not read: reading a task's system
        # call waits until it is off its CPU, and a starting runtime rarely is.
        with contextlib.suppress(OSError):
            self._syscall_fd = os.open(
                f"/proc/{self.sandbox.pid}/syscall", os.O_RDONLY | os.O_CLOEXEC
            )
        started = time.monotonic()
        try:
            header, _ = await self._frame(timeout)
        except TimeoutError:
            return self._failure(
                "Sandbox.Timedout",
                f"Init phase timed out after {timeout:.2f} seconds",
                started,
                "timeout",
            )
        except ProtocolViolation as violation:
            return self._failure("Runtime.InvalidResponse", str(violation), started, "error")
        except (ChannelClosed, ConnectionError):
            return await self._died(started)
        await self._logs.wait_marked(MARKER_GRACE_S)
        if header.get("type") == "ready":
            return None
        error = header.get("error")
        if not isinstance(error, dict):
            error = {}
        return Outcome(
            payload=orjson.dumps(error),
            function_error=True,
            error_type=str(error.get("errorType", "Runtime.Unknown")),
            status="error",
            duration_ms=(time.monotonic() - started) * 1000,
            lines=self._logs.take(),
            healthy=False,
            max_memory_mb=self.peak_memory_mb(),
        )

    def take_init_lines(self) -> list[Line]:
        return self._logs.take() if self._logs else []

    async def invoke(self, header: dict[str, Any], payload: bytes, timeout: float) -> Outcome:
        assert self._channel is not None and self._logs is not None
        self.settle(check_runtime=False)  # the pool settles before reusing: this is a backstop
        self._watch_cpu_ns = None
        self.invocations += 1
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if self.frozen:
            self.sandbox.cgroup.thaw()
            self.frozen = False
        request_id = header["request_id"]
        started = time.monotonic()
        self._logs.begin(request_id)
        self._channel.expect_result(request_id)
        self._channel.send(header, payload)
        try:
            reply, body = await self._frame(timeout)
        except TimeoutError:
            return self._failure(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
                started,
                "timeout",
                log_line=f"{_iso_now()} {request_id} Task timed out after {timeout:.2f} seconds",
            )
        except (ChannelClosed, ConnectionError):
            return await self._died(started, request_id)
        except ProtocolViolation as violation:
            return self._failure(
                "Runtime.InvalidResponse",
                f"RequestId: {request_id} Error: {violation}",
                started,
                "error",
            )
        ended = time.monotonic()
        if not self._logs.marked:  # the output is complete only with its marker
            await self._logs.wait_marked(MARKER_GRACE_S)
            ended = time.monotonic()
        failure = self._channel.failure
        if isinstance(failure, ProtocolViolation):  # more frames came right after the result
            return self._failure(
                "Runtime.InvalidResponse",
                f"RequestId: {request_id} Error: {failure}",
                started,
                "error",
            )
        self.last_used = ended
        peak = self.peak_memory_mb()
        gone = self.destroyed  # the runtime went away after answering: the answer stands
        settlement = (
            None if gone else Settlement(started, ended, int(time.time() * 1000), self._cpu_ns())
        )
        self._unsettled = settlement
        duration = (ended - started) * 1000
        if body is None:
            return Outcome(
                payload=error_payload(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size exceeded maximum allowed payload size ({self.response_limit} bytes).",
                ),
                function_error=True,
                error_type="Function.ResponseSizeTooLarge",
                duration_ms=duration,
                lines=self._logs.take(),
                healthy=not gone,
                max_memory_mb=peak,
                settlement=settlement,
            )
        failed = bool(reply.get("error"))
        error_type = None
        if failed:
            try:
                error_type = str(orjson.loads(body).get("errorType"))
            except (orjson.JSONDecodeError, AttributeError):
                error_type = None
        return Outcome(
            payload=body,
            function_error=failed,
            error_type=error_type,
            duration_ms=duration,
            lines=self._logs.take(),
            healthy=not gone,
            max_memory_mb=peak,
            settlement=settlement,
        )

    def settle(
        self,
        freeze: bool = False,
        patient: bool = False,
        check_runtime: bool = True,
        early: bool = False,
    ) -> None:
        """End the last invocation's billed duration, if it is still open.

        The result frame is only the runtime's word that it is done: the function runs in the
        same process and can write one early and keep working. The kernel's word decides:
        - the cgroup's CPU usage since the result: more than IDLE_CPU_SLACK_NS means the sandbox
          kept working (any thread, any process);
        - with `check_runtime`, the runtime's main thread as /proc/<pid>/syscall shows it: an
          idle runtime is blocked reading its next event; blocked in anything else (a sleep, a
          lock, another wait) it is not idle, whatever it used of the CPU. `running` is not
          judged (it may be on its way to that read): `patient` settles (the freeze timer's)
          look again later, up to SETTLE_PATIENCE times, before deciding on the CPU alone.
        Idle: the duration ends at the result. Not idle: it ran until now; and unless the runtime
        is back at its read (other threads of the function working on after it returned, which
        Lambda would simply freeze), the sandbox is destroyed, so work after an early result is
        neither finished for free nor leaked into the next invocation.
        Called when the sandbox is frozen (`freeze`: its state is read first, then it is frozen,
        which also brings the CPU accounting of its running tasks up to date), reused (CPU only:
        the warm path), destroyed, or `early`, when the invoker needs the figures at once (CPU
        only too: reading a task's system call waits until it is off its CPU, and right after
        its result the runtime rarely is); the sandbox is then watched until its freeze, and
        destroyed if it was not idle meanwhile (that work, at most the freeze delay, is not
        billed: the REPORT is out).
        """
        pending = self._unsettled
        if pending is None:
            return
        state = self._runtime_state() if check_runtime and not self.sandbox.destroyed else None
        if (
            patient
            and pending.patience > 0
            and _look_again(state, self._cpu_grew(pending.cpu_ns)[0])
        ):
            pending.patience -= 1
            self._freeze_timer = asyncio.get_running_loop().call_later(
                self._freeze_delay, self._freeze_due
            )
            return
        self._unsettled = None
        if freeze:
            self.freeze_now()
        grew, used = (False, None) if self.sandbox.destroyed else self._cpu_grew(pending.cpu_ns)
        if grew and state is None and not self.sandbox.destroyed:
            state = self._runtime_state()  # only read when it decides something (see below)
        busy = state == ELSEWHERE or grew
        lines = self._logs.take() if self._logs is not None else []
        if busy:
            end, end_ms = time.monotonic(), int(time.time() * 1000)
            if state != WAITING:
                log.info("instance %s was not idle after its result: destroyed", self.id)
                self.destroy()
            # else: the runtime is back at its read and other threads worked on: the function's
            # own background work after it returned (Lambda would freeze it mid-way). It is
            # billed up to now, and the instance is kept (frozen, it resumes billed next time).
        else:
            end, end_ms = pending.ended, pending.ended_ms
            if early and not self.frozen:
                self._watch_cpu_ns = used
                self._watch_patience = SETTLE_PATIENCE
        pending.deliver(Settled((end - pending.started) * 1000, end_ms, lines, busy))

    def _cpu_grew(self, since: int | None) -> tuple[bool, int | None]:
        """Whether the sandbox used more than IDLE_CPU_SLACK_NS of CPU since `since` (never when
        either figure is unknown), and its usage now."""
        used = self._cpu_ns()
        if since is None or used is None:
            return False, used
        return used - since > IDLE_CPU_SLACK_NS, used

    def _watch_until_frozen(self) -> None:
        """An instance settled early is due to be frozen: destroyed instead if it was not idle
        meanwhile (a runtime still `running` is looked at again, as in `settle`)."""
        since = self._watch_cpu_ns
        state = self._runtime_state()
        grew = self._cpu_grew(since)[0]
        if self._watch_patience > 0 and _look_again(state, grew):
            self._watch_patience -= 1
            self._freeze_timer = asyncio.get_running_loop().call_later(
                self._freeze_delay, self._freeze_due
            )
            return
        self._watch_cpu_ns = None
        self.freeze_now()
        if state != WAITING and (state == ELSEWHERE or grew or self._cpu_grew(since)[0]):
            log.info(
                "instance %s was not idle after its invocation was settled: destroyed", self.id
            )
            self.destroy()

    def _cpu_ns(self) -> int | None:
        try:
            return self.sandbox.cgroup.cpu_usage_ns()
        except (OSError, ValueError):
            return None

    def _runtime_state(self) -> str | None:
        """WAITING (blocked reading), RUNNING, ELSEWHERE (blocked in another system call), or
        None when it cannot be read (never held against the instance)."""
        try:
            if self._syscall_fd is None:
                self._syscall_fd = os.open(
                    f"/proc/{self.sandbox.pid}/syscall", os.O_RDONLY | os.O_CLOEXEC
                )
            text = os.pread(self._syscall_fd, 64, 0)
        except OSError:
            return None
        number = text.split(b" ", 1)[0].strip()
        if number == b"running":
            return RUNNING
        try:
            return WAITING if int(number) in _READ_SYSCALLS else ELSEWHERE
        except ValueError:
            return None

    def _failure(
        self,
        error_type: str,
        message: str,
        started: float,
        status: str,
        log_line: str | None = None,
    ) -> Outcome:
        peak = self.peak_memory_mb()
        self.destroy()
        lines = self._logs.take() if self._logs else []
        if log_line:
            lines.append((int(time.time() * 1000), log_line, True))
        return Outcome(
            payload=error_payload(error_type, message),
            function_error=True,
            error_type=error_type,
            status=status,
            duration_ms=(time.monotonic() - started) * 1000,
            lines=lines,
            healthy=False,
            max_memory_mb=peak,
        )

    async def _died(self, started: float, request_id: str = "") -> Outcome:
        """The runtime went away: out of memory, or it exited (sys.exit, a crash, a kill)."""
        if self._logs is not None and not self._logs.closed.done():
            loop = asyncio.get_running_loop()
            timer = loop.call_later(0.5, _resolve, self._logs.closed)
            await self._logs.closed
            timer.cancel()
        oom = False
        try:
            oom = self.sandbox.cgroup.oom_kills() > 0
        except (OSError, ValueError):
            oom = False
        prefix = f"RequestId: {request_id} Error: " if request_id else ""
        if oom:
            return self._failure(
                "Runtime.OutOfMemory",
                f"{prefix}Runtime exited with error: signal: killed",
                started,
                "error",
            )
        return self._failure(
            "Runtime.ExitError",
            f"{prefix}Runtime exited without providing a reason",
            started,
            "error",
        )

    def freeze(self, delay: float = 0.0) -> None:
        """Freeze the sandbox now, or after `delay` seconds unless an invocation comes first
        (a back-to-back invocation then costs no freeze/thaw round trip)."""
        if delay > 0:
            self._freeze_delay = delay
            if self._freeze_timer is None:
                self._freeze_timer = asyncio.get_running_loop().call_later(delay, self._freeze_due)
            return
        self._freeze_due()

    def _freeze_due(self) -> None:
        self._freeze_timer = None
        if self._unsettled is not None:
            self.settle(freeze=True, patient=True)
        elif self._watch_cpu_ns is not None:
            self._watch_until_frozen()
        else:
            self.freeze_now()

    def freeze_now(self) -> None:
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if not self.frozen and not self.destroyed:
            try:
                self.sandbox.cgroup.freeze()
            except OSError:
                self.destroy()  # a sandbox we cannot freeze is not reused
                return
            self.frozen = True

    def peak_memory_mb(self) -> int:
        try:
            return -(-self.sandbox.cgroup.peak_memory_bytes() // (1024 * 1024))
        except (OSError, ValueError):
            return 0

    def destroy(self) -> None:
        """Kill the sandbox; the log pipe reaches EOF once its last process is gone."""
        if self._destroying:
            return
        self._destroying = True
        self.settle()  # an invocation still open is accounted first, while the cgroup exists
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        # Transports first: they stop watching the descriptors the sandbox then closes.
        if self._channel is not None and self._channel.transport is not None:
            self._channel.on_failure = None
            self._channel.transport.close()
        if self._log_transport is not None:
            self._log_transport.close()
        if self.api_server is not None:
            self.api_server.close()
        self.sandbox.destroy()
        if self._syscall_fd is not None:
            os.close(self._syscall_fd)
            self._syscall_fd = None
        on_destroyed, self.on_destroyed = self.on_destroyed, None
        if on_destroyed is not None:
            on_destroyed(self)


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
