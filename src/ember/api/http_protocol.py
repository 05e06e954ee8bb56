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
  limit). A new one beyond that evicts the connection that has waited longest without a
  request in progress, or is refused if every connection is busy. Connections over the API's
  Unix socket (the functions' relays) are bounded by the relay instead (worker/api_relay.py).
"""

from __future__ import annotations

import asyncio
import resource
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _PipelineTooDeep(Exception):
    """Raised from the parser's callback: httptools stops and uvicorn answers 400 and closes."""


class _TcpConnections:
    """The TCP connections of one server, those without a request in progress in the order
    they became so (the first is evicted when a new connection needs room)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.waiting: dict[CoalescingHttpProtocol, None] = {}


class CoalescingHttpProtocol(HttpToolsProtocol):
    tcp_connections: ClassVar[_TcpConnections] = _TcpConnections(tcp_connection_limit())

    @classmethod
    def configured(cls, max_tcp_connections: int) -> type[CoalescingHttpProtocol]:
        """The protocol for one server, with its own bound on TCP connections."""
        attributes = {"tcp_connections": _TcpConnections(max_tcp_connections)}
        return cast(type[CoalescingHttpProtocol], type(cls.__name__, (cls,), attributes))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._eof = False
        self._body_at = 0.0
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._tcp = self.client is not None  # a Unix socket connection has no peer address
        if self._tcp:
            tcp = self.tcp_connections
            if tcp.open >= tcp.limit:
                oldest = next(iter(tcp.waiting), None)
                if oldest is None:
                    self._tcp = False  # not counted: it is refused
                    transport.abort()
                    return
                del tcp.waiting[oldest]
                oldest.transport.abort()
            tcp.open += 1
            tcp.waiting[self] = None
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
            self.tcp_connections.open -= 1
            self.tcp_connections.waiting.pop(self, None)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers:
            if self._timer is None:
                self._timer = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.disconnected:
            self._body_at = self.loop.time()
            if self._timer is None:
                self._timer = self.loop.call_later(BODY_TIMEOUT_S, self._body_too_slow)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client half-closed: if its last request is complete and still being answered,
        finish answering (then close); otherwise close now."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.more_body or self._in_headers:
            return None
        self._eof = True
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self.pipeline) >= MAX_PIPELINED:
            raise _PipelineTooDeep
        if self._tcp:
            self.tcp_connections.waiting.pop(self, None)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.pipeline or self.transport.is_closing():
            return
        if self._eof:
            self.transport.close()
        elif self._tcp:
            self.tcp_connections.waiting[self] = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self._in_headers and not self.transport.is_closing():
            self.transport.close()

    def _body_too_slow(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        quiet = self.loop.time() - self._body_at
        if quiet < BODY_TIMEOUT_S:
            self._timer = self.loop.call_later(BODY_TIMEOUT_S - quiet, self._body_too_slow)
            return
        if not cycle.response_started:
            self.transport.write(BODY_TIMEOUT_RESPONSE)
        cycle.disconnected = True  # the app's receive() ends; whatever it sends is dropped
        cycle.message_event.set()
        self.transport.close()
