"""How functions reach Ember's API: the platform relays each sandbox's 127.0.0.1:<port>.

Every sandbox has its own network namespace with only a loopback interface. While it is built
it opens a socket listening on its own 127.0.0.1:<port> and hands the descriptor to the
platform; a socket stays in the namespace it was made in, so the platform accepts the
function's connections there and relays the bytes to Ember's API over its Unix socket. Nothing
else is reachable, and no thread or proxy runs inside the sandbox.

Everything on the function's side is hostile, so the relay is bounded and owns what it opens:

- A sandbox has at most `MAX_CONNECTIONS` relayed connections; at the cap the relay stops
  accepting (further connections wait in the sandbox's own listen backlog, which costs the
  platform nothing). All sandboxes together have at most `total_limit()` (a share of the
  server's descriptor limit); past it a new connection is closed at once.
- The upstream connection (to the API socket) is made only when the function sends its first
  bytes, so connect/close storms and idle sockets cost one descriptor each, not three.
- Flow control both ways: a side whose write buffer is above `HIGH_WATER` pauses reading from
  the other side, and every read is at most `READ_CHUNK` bytes, so a connection buffers at most
  2 * (HIGH_WATER + READ_CHUNK) bytes whatever the function does (slow readers, pipelining).
- Every transport stays referenced by its sandbox's relay until its `connection_lost`, and the
  relay closes both sides itself when the exchange is over (both directions ended, or either
  side lost). A closing side that cannot flush within `LINGER_S` is aborted. `close()` (the
  sandbox ends) aborts every connection at once.

Why the ownership matters: uvloop keeps a pending `write_eof()` shutdown request inside the
transport object without holding a reference for it. The old relay propagated half-closes and
then left both transports unreferenced (a garbage cycle); when the garbage collector freed one
while its shutdown was pending, libuv called back into freed memory ("double free or
corruption", a dead server). `bench/uvloop_shutdown_crash.py` reproduces it in ten lines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from pathlib import Path
from typing import cast

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32  # relayed connections per sandbox (boto3 pools 10 by default)
READ_CHUNK = 64 * 1024  # at most this much is read from either side at a time
HIGH_WATER = 64 * 1024  # a side buffering more than this pauses reading from the other side
LOW_WATER = 16 * 1024
LINGER_S = 10.0  # a closing side gets this long to flush what it holds, then it is aborted
ACCEPT_BATCH = 16  # connections accepted per wake-up, so one sandbox cannot monopolise the loop
ACCEPT_RETRY_S = 0.1  # after EMFILE/ENFILE, wait this long before accepting again

# One read buffer for every relayed connection: a read and its copy out happen in one callback.
_READ_BUFFER = bytearray(READ_CHUNK)
_READ_VIEW = memoryview(_READ_BUFFER)

# Every relayed connection of this process until both its transports are lost: a transport is
# never left to the garbage collector while it is open, even if its relay is dropped unclosed.
_OPEN: set[_Link] = set()


def total_limit() -> int:
    """Relayed connections across all sandboxes: each holds up to three of the server's
    descriptors (the function's connection, and both ends of the API socket connection), so
    together they may take at most about a fifth of the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(64, soft // 16)


class _Side(asyncio.BufferedProtocol):
    """One of a relayed connection's two transports: the function's (down) or the API's (up)."""

    def __init__(self, link: _Link, upstream: bool) -> None:
        self.link = link
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.made(self, cast(asyncio.Transport, transport))

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.link.received(self, bytes(_READ_VIEW[:nbytes]))

    def eof_received(self) -> bool:
        self.link.eof(self)
        return True  # the link decides when to close

    def pause_writing(self) -> None:
        self.link.pause_other(self, True)

    def resume_writing(self) -> None:
        self.link.pause_other(self, False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(self)


class _Link:
    """One relayed connection: the function's transport (down) and the API's (up)."""

    def __init__(self, relay: SandboxRelay) -> None:
        self.relay = relay
        self.down: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self.adopting: asyncio.Task[None] | None = None  # wrapping the accepted socket
        self.connecting: asyncio.Task[None] | None = None  # connecting to the API socket
        self.pending = b""  # what the function sent before the upstream connection was made
        self.down_eof = False
        self.up_eof = False
        self.down_open = False  # connection_made seen and connection_lost not yet
        self.up_open = False
        self.closed = False
        self.linger: asyncio.TimerHandle | None = None

    # -- events from the two sides

    def made(self, side: _Side, transport: asyncio.Transport) -> None:
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        if side.upstream:
            self.up, self.up_open = transport, True
        else:
            self.down, self.down_open = transport, True
        if self.closed:  # the relay closed while this side was being set up
            transport.abort()

    def received(self, side: _Side, data: bytes) -> None:
        if side.upstream:
            if self.down is not None and not self.down.is_closing():
                self.down.write(data)
            return
        if self.up is not None:
            if not self.up.is_closing():
                self.up.write(data)
            return
        # The first bytes: connect upstream now, and read no more until that is done.
        self.pending += data
        if self.connecting is None and not self.closed:
            assert self.down is not None
            self.down.pause_reading()
            self.connecting = asyncio.get_running_loop().create_task(self._connect())

    def eof(self, side: _Side) -> None:
        if side.upstream:
            self.up_eof = True
            self._shut(self.down)
        else:
            self.down_eof = True
            if self.up is None and self.connecting is None:
                self.close()  # half-closed before sending anything: nothing to relay
                return
            self._shut(self.up)  # (if still connecting, _connect does it)
        if self.up_eof and self.down_eof:
            self.close()

    def pause_other(self, side: _Side, pause: bool) -> None:
        """`side` cannot take more for now (or can again): stop (or resume) reading the other."""
        other = self.down if side.upstream else self.up
        if other is None or other.is_closing():
            return
        if pause:
            other.pause_reading()
        elif not (other is self.down and self.up is None):  # still connecting: stays paused
            other.resume_reading()

    def lost(self, side: _Side) -> None:
        if side.upstream:
            self.up_open = False
        else:
            self.down_open = False
        self.close()
        self.forget_if_done()

    # -- doing

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(
                lambda: _Side(self, upstream=True), str(self.relay.api_socket)
            )
        except (OSError, asyncio.CancelledError):
            self.connecting = None
            self.close(abort=True)
            self.forget_if_done()
            return
        self.connecting = None
        up, down = self.up, self.down
        if self.closed or up is None or down is None:
            self.forget_if_done()
            return
        up.write(self.pending)
        self.pending = b""
        if self.down_eof:
            self._shut(up)
        elif not down.is_closing() and up.get_write_buffer_size() <= HIGH_WATER:
            down.resume_reading()

    def _shut(self, transport: asyncio.Transport | None) -> None:
        """Pass a half-close on: write_eof on a transport that is still open, never later."""
        if transport is None or transport.is_closing():
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        """End the exchange: both sides closed (flushing, or at once with `abort`)."""
        first = not self.closed
        self.closed = True
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for transport in (self.down, self.up):
            if transport is None:
                continue
            if abort:
                transport.abort()
            elif not transport.is_closing():
                transport.close()
        if first and not abort and (self.down_open or self.up_open):
            self.linger = asyncio.get_running_loop().call_later(LINGER_S, self.close, True)

    def forget_if_done(self) -> None:
        """Once no transport of this connection is open or being made, its relay lets go."""
        if (
            self.up_open
            or self.down_open
            or self.adopting is not None
            or self.connecting is not None
        ):
            return
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        self.relay.forget(self)


class SandboxRelay:
    """Relays the connections a sandbox makes to its 127.0.0.1:<port>; `close()` ends them all."""

    def __init__(self, listener: socket.socket, api_socket: Path) -> None:
        self.listener = listener
        self.api_socket = api_socket
        self.loop = asyncio.get_running_loop()
        self.links: set[_Link] = set()
        self.accepting = False
        self.closed = False
        self.total_limit = total_limit()
        self._retry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.listener.setblocking(False)
        self._accept_more()

    def _accept_more(self) -> None:
        self._retry = None
        if not self.accepting and not self.closed:
            self.loop.add_reader(self.listener.fileno(), self._on_acceptable)
            self.accepting = True

    def _stop_accepting(self) -> None:
        if self.accepting:
            self.loop.remove_reader(self.listener.fileno())
            self.accepting = False

    def _on_acceptable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self.links) >= MAX_CONNECTIONS:
                self._stop_accepting()  # until one of them ends
                return
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._stop_accepting()
                    self._retry = self.loop.call_later(ACCEPT_RETRY_S, self._accept_more)
                    return
                continue  # e.g. ECONNABORTED: that connection is gone, the next may not be
            if len(_OPEN) >= self.total_limit:
                sock.close()  # the server's descriptors come first
                continue
            self._adopt(sock)

    def _adopt(self, sock: socket.socket) -> None:
        link = _Link(self)
        self.links.add(link)
        _OPEN.add(link)
        link.adopting = self.loop.create_task(self._wrap(link, sock))

    async def _wrap(self, link: _Link, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            await self.loop.connect_accepted_socket(lambda: _Side(link, upstream=False), sock)
        except (OSError, asyncio.CancelledError):
            sock.close()
            link.closed = True
        link.adopting = None
        link.forget_if_done()

    def forget(self, link: _Link) -> None:
        self.links.discard(link)
        _OPEN.discard(link)
        if len(self.links) < MAX_CONNECTIONS and self._retry is None:
            self._accept_more()

    def close(self) -> None:
        """The sandbox is ending: stop accepting and abort every relayed connection now."""
        if self.closed:
            return
        self.closed = True
        self._stop_accepting()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for link in list(self.links):
            link.close(abort=True)

    def __len__(self) -> int:
        return len(self.links)


async def serve(listener: socket.socket, api_socket: Path) -> SandboxRelay:
    """Relay the connections made to `listener` (a sandbox's) to Ember's API socket."""
    relay = SandboxRelay(listener, api_socket)
    relay.start()
    return relay
