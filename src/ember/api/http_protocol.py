"""uvicorn's httptools protocol, with each response leaving in one send, and bounded clients.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and its body on `http.response.body`: two syscalls, and two wake-ups of
the client, per response. For an invocation (a few hundred bytes) those dominate the cost of the
response. Here writes made during one turn of the event loop are joined and sent together at
the end of the turn; nothing is held longer than that.

Plain uvicorn also trusts its clients to finish what they start; here no client can hold the
server's descriptors or memory for long:

- a client that half-closes (shutdown(SHUT_WR)) after a complete request still gets its
  response, then the connection is closed (uvicorn closed at once and dropped the response);
- a connection that sends nothing is closed after uvicorn's keep-alive timeout (5 s), as an
  idle keep-alive connection already was;
- a request's headers must be complete `HEADER_TIMEOUT_S` after its first byte (slowloris);
- a body that stops arriving for `BODY_TIMEOUT_S` (a Content-Length larger than the body sent)
  is answered 400 `RequestTimeoutException` and the connection closed;
- a client may pipeline at most `MAX_PIPELINED` requests ahead of the one being answered
  (uvicorn would otherwise parse and queue every request it reads): past that, 400 and close;
- at most `max_tcp_connections` TCP connections are open at once (a share of the descriptor
  limit). A new one beyond that evicts the oldest connection without a request in progress,
  or is refused if every connection is busy. Connections over the API's
  Unix socket (the functions' relays) are bounded by the relay instead (worker/api_relay.py).
"""

from __future__ import annotations

import asyncio
import resource
from collections import deque
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
MAX_PIPELINED = 32

_BODY_TIMEOUT_MESSAGE = (
    b'{"Type":"User","message":"The request body did not arrive: nothing was received for '
    + str(int(BODY_TIMEOUT_S)).encode()
    + b' seconds before the body announced by Content-Length was complete."}'
)
BODY_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: application/json\r\n"
    b"x-amzn-errortype: RequestTimeoutException\r\n"
    b"content-length: " + str(len(_BODY_TIMEOUT_MESSAGE)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY_TIMEOUT_MESSAGE
)


def tcp_connection_limit() -> int:
    """TCP connections to the main port: at most a quarter of the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(64, soft // 4)


class _CoalescingTransport:
    """A transport that holds a write until the next one (sent together, at once) or the end
    of the event-loop turn, whichever comes first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    # Called for every request: direct, not through __getattr__ (a failed lookup first).
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _PipelineTooDeep(Exception):
    """Raised from the parser's callback: httptools stops and uvicorn answers 400 and closes."""


class _Pipeline(deque[Any]):
    """uvicorn's queue of pipelined requests, bounded: only the pipelining path appends."""

    def appendleft(self, item: Any) -> None:
        if len(self) >= MAX_PIPELINED:
            raise _PipelineTooDeep  # out of the parser's callback: uvicorn answers 400, closes
        super().appendleft(item)


class _TcpConnections:
    """The open TCP connections of one server, oldest first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[CoalescingHttpProtocol, None] = {}

    def make_room(self) -> bool:
        """At the limit, abort the oldest connection without a request in progress."""
        if len(self.open) < self.limit:
            return True
        for connection in self.open:
            cycle = connection.cycle
            if cycle is None or cycle.response_complete:
                del self.open[connection]
                connection.transport.abort()
                return True
        return False


class CoalescingHttpProtocol(HttpToolsProtocol):
    tcp_connections: ClassVar[_TcpConnections] = _TcpConnections(tcp_connection_limit())

    @classmethod
    def configured(cls, max_tcp_connections: int) -> type[CoalescingHttpProtocol]:
        """The protocol for one server, with its own bound on TCP connections."""
        attributes = {"tcp_connections": _TcpConnections(max_tcp_connections)}
        return cast(type[CoalescingHttpProtocol], type(cls.__name__, (cls,), attributes))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None  # watches an incomplete request
        self._watched: object = None  # the scope of the request being watched
        self._body_at = 0.0  # when body bytes last arrived
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self.pipeline = _Pipeline()
        self._tcp = self.client is not None  # a Unix socket connection has no peer address
        if self._tcp:
            if not self.tcp_connections.make_room():
                self._tcp = False  # refused, so not counted
                transport.abort()
                return
            self.tcp_connections.open[self] = None
        # Nothing arrives: closed like an idle keep-alive connection (data_received cancels it).
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tcp:
            self._tcp = False
            self.tcp_connections.open.pop(self, None)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The usual case costs a few attribute reads: the request arrived whole (its cycle
        # exists and has its body). Otherwise one timer watches it; when it fires it looks
        # again (_watch), so nothing is cancelled or re-armed on the way.
        scope, cycle = self.scope, self.cycle
        if cycle is None or cycle.scope is not scope:
            if self._timer is None:  # headers begun and not complete (or bytes that begin none)
                self._watched = scope
                self._timer = self.loop.call_later(HEADER_TIMEOUT_S, self._watch)
        elif cycle.more_body and not cycle.disconnected:
            self._body_at = self.loop.time()
            if self._timer is None:
                self._watched = scope
                self._timer = self.loop.call_later(BODY_TIMEOUT_S, self._watch)
        elif cycle.response_complete and self.timeout_keep_alive_task is None:
            # Bytes that began no request (blank lines) on an idle connection: still idle.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client half-closed: if its last request is complete and still being answered,
        finish answering (then close); otherwise close now."""
        cycle = self.cycle
        if (
            cycle is None
            or cycle.scope is not self.scope  # in the middle of headers
            or cycle.response_complete
            or cycle.more_body
        ):
            return None
        cycle.keep_alive = False  # uvicorn closes once it has answered
        return True

    def _watch(self) -> None:
        """The watched request's headers or body are late, or it is long complete."""
        self._timer = None
        if self.transport.is_closing():
            return
        scope, cycle = self.scope, self.cycle
        if cycle is None or cycle.scope is not scope:  # headers incomplete
            if scope is self._watched:
                self.transport.close()  # HEADER_TIMEOUT_S after they began
            else:  # a newer request's: watch it from now
                self._watched = scope
                self._timer = self.loop.call_later(HEADER_TIMEOUT_S, self._watch)
            return
        if not cycle.more_body or cycle.disconnected:
            return
        quiet = self.loop.time() - self._body_at
        if quiet < BODY_TIMEOUT_S:
            self._timer = self.loop.call_later(BODY_TIMEOUT_S - quiet, self._watch)
            return
        if not cycle.response_started:
            self.transport.write(BODY_TIMEOUT_RESPONSE)
        cycle.disconnected = True  # the app's receive() ends; whatever it sends is dropped
        cycle.message_event.set()
        self.transport.close()
