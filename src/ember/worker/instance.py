"""One function instance: a sandbox running the runtime for one function version.

It speaks the worker protocol (frames over the instance socket), collects the sandbox's
output from its log pipe, and turns every way an invocation can end into an Outcome:
a result, a function error, a timeout, an out-of-memory kill or a runtime exit. An instance
that failed in any way is destroyed by its pool, never reused.

The I/O is plain asyncio protocols with futures and timer handles (no tasks, no wait_for):
this is the warm-invoke hot path.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from ember.sandbox.sandbox import Sandbox
from ember.worker.api_relay import SandboxRelay

HEADER = struct.Struct("!II")
MAX_HEADER = 1024 * 1024
MAX_LINE = 256 * 1024
MAX_BUFFERED_OUTPUT = 16 * 1024 * 1024
MARKER_GRACE_S = 1.0  # how long output may trail its result frame


class ProtocolViolation(Exception):
    pass


class ChannelClosed(Exception):
    pass


@dataclass
class Outcome:
    payload: bytes
    function_error: bool = False
    error_type: str | None = None
    status: str | None = None  # REPORT's "Status: timeout | error"
    duration_ms: float = 0.0
    lines: list[tuple[int, str]] = field(default_factory=list)
    healthy: bool = True  # False: the instance must be destroyed
    max_memory_mb: int = 0


def error_payload(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorType": error_type, "errorMessage": message})


Frame = tuple[dict[str, Any], bytes | None]  # body None: over the response limit (discarded)


class FrameChannel(asyncio.Protocol):
    """The platform's end of the instance socket: parses `!II` + JSON header + body frames.

    Everything the sandbox sends is untrusted: an oversized header or malformed JSON is a
    protocol violation, and a body over the response limit is counted and discarded, never
    buffered.
    """

    def __init__(self, response_limit: int) -> None:
        self.response_limit = response_limit
        self.buffer = bytearray()
        self.pending: tuple[dict[str, Any], int] | None = None  # header read, body to come
        self.skipping = 0  # bytes of an oversized body still to discard
        self.frames: list[Frame] = []
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
                if len(buf) < HEADER.size + header_len:
                    return
                try:
                    header = orjson.loads(bytes(buf[HEADER.size : HEADER.size + header_len]))
                except orjson.JSONDecodeError:
                    raise ProtocolViolation("runtime sent a malformed frame header") from None
                if not isinstance(header, dict):
                    raise ProtocolViolation("runtime sent a malformed frame header")
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

    def _deliver(self, frame: Frame) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(frame)
        else:
            self.frames.append(frame)

    def _fail(self, error: Exception) -> None:
        self.failure = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.failure is None:
            self._fail(ChannelClosed("the runtime closed its channel"))

    def next_frame(self) -> asyncio.Future[Frame]:
        """A future for the next frame (raises ChannelClosed / ProtocolViolation)."""
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        if self.frames:
            future.set_result(self.frames.pop(0))
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
    """Reads the sandbox's stdout/stderr pipe and splits it into lines per invocation."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode() + b" "
        self.partial = b""
        self.lines: list[tuple[int, str]] = []
        self.buffered = 0
        self.truncated = 0
        self.seen: set[str] = set()
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.partial += data
        *complete, self.partial = self.partial.split(b"\n")
        if len(self.partial) > MAX_LINE:
            complete.append(self.partial)
            self.partial = b""
        now = int(time.time() * 1000)
        for raw in complete:
            # The marker ends the line it is on: output a child process left unterminated
            # (the runtime cannot see it) may stand before it.
            at = raw.find(self.marker)
            if at >= 0:
                if at > 0:
                    self._add(now, raw[:at])
                token = raw[at + len(self.marker) :].decode(errors="replace")
                waiter = self.waiters.pop(token, None)
                if waiter is not None:
                    _resolve(waiter)
                else:
                    self.seen.add(token)
                continue
            self._add(now, raw)

    def _add(self, now: int, raw: bytes) -> None:
        if self.buffered > MAX_BUFFERED_OUTPUT:
            self.truncated += 1
            return
        text = raw[:MAX_LINE].decode(errors="replace")
        self.buffered += len(text)
        self.lines.append((now, text))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.partial:
            self.lines.append((int(time.time() * 1000), self.partial.decode(errors="replace")))
            self.partial = b""
        _resolve(self.closed)
        for waiter in self.waiters.values():
            _resolve(waiter)
        self.waiters.clear()

    async def wait_for(self, token: str, timeout: float) -> None:
        """Until the runtime's end-of-output marker for `token` arrives (bounded)."""
        if token in self.seen:
            self.seen.discard(token)
            return
        if self.closed.done():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters[token] = waiter
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiters.pop(token, None)

    def take(self) -> list[tuple[int, str]]:
        lines, self.lines, self.buffered = self.lines, [], 0
        if self.truncated:
            lines.append(
                (
                    int(time.time() * 1000),
                    f"[ember] {self.truncated} lines dropped: output over {MAX_BUFFERED_OUTPUT} bytes",
                )
            )
            self.truncated = 0
        return lines


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

    @property
    def id(self) -> str:
        return self.sandbox.id

    async def _frame(self, timeout: float) -> Frame:
        """The next frame, or TimeoutError after `timeout` seconds."""
        assert self._channel is not None
        future = self._channel.next_frame()
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def start(self, timeout: float) -> Outcome | None:
        """Connect and wait for the runtime to initialise. None when ready; else the failure."""
        loop = asyncio.get_running_loop()
        self.sandbox.channel.setblocking(False)
        _, self._channel = await loop.connect_accepted_socket(
            lambda: FrameChannel(self.response_limit), self.sandbox.channel
        )
        pipe = os.fdopen(self.sandbox.log_fd, "rb", buffering=0)
        transport, protocol = await loop.connect_read_pipe(lambda: LogCollector(self.marker), pipe)
        self._log_transport, self._logs = transport, protocol
        started = time.monotonic()
        try:
            header, _ = await self._frame(timeout)
        except TimeoutError:
            return self._failure(
                "Sandbox.Timedout", f"Init phase timed out after {timeout:.2f} seconds", started, "timeout"
            )
        except (ChannelClosed, ProtocolViolation, ConnectionError):
            return await self._died(started)
        await self._logs.wait_for("init", MARKER_GRACE_S)
        if header.get("type") == "ready":
            return None
        error = header.get("error") or {}
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

    def take_init_lines(self) -> list[tuple[int, str]]:
        return self._logs.take() if self._logs else []

    async def invoke(self, header: dict[str, Any], payload: bytes, timeout: float) -> Outcome:
        assert self._channel is not None and self._logs is not None
        self.invocations += 1
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if self.frozen:
            self.sandbox.cgroup.thaw()
            self.frozen = False
        request_id = header["request_id"]
        started = time.monotonic()
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
            return self._failure("Runtime.InvalidResponse", str(violation), started, "error")
        duration = (time.monotonic() - started) * 1000
        await self._logs.wait_for(request_id, MARKER_GRACE_S)
        self.last_used = time.monotonic()
        peak = self.peak_memory_mb()
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
                max_memory_mb=peak,
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
            max_memory_mb=peak,
        )

    def _failure(
        self, error_type: str, message: str, started: float, status: str, log_line: str | None = None
    ) -> Outcome:
        peak = self.peak_memory_mb()
        self.destroy()
        lines = self._logs.take() if self._logs else []
        if log_line:
            lines.append((int(time.time() * 1000), log_line))
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
                "Runtime.OutOfMemory", f"{prefix}Runtime exited with error: signal: killed", started, "error"
            )
        return self._failure(
            "Runtime.ExitError", f"{prefix}Runtime exited without providing a reason", started, "error"
        )

    def freeze(self, delay: float = 0.0) -> None:
        """Freeze the sandbox now, or after `delay` seconds unless an invocation comes first
        (a back-to-back invocation then costs no freeze/thaw round trip)."""
        if delay > 0:
            if self._freeze_timer is None:
                self._freeze_timer = asyncio.get_running_loop().call_later(delay, self._freeze_now)
            return
        self._freeze_now()

    def _freeze_now(self) -> None:
        self._freeze_timer = None
        if not self.frozen and not self.sandbox.destroyed:
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
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        # Transports first: they stop watching the descriptors the sandbox then closes.
        if self._channel is not None and self._channel.transport is not None:
            self._channel.transport.close()
        if self._log_transport is not None:
            self._log_transport.close()
        if self.api_server is not None:
            self.api_server.close()
        self.sandbox.destroy()


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
