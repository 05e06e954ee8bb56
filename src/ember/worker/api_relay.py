"""How functions reach Ember's API: the platform relays each sandbox's 127.0.0.1:<port>.

Every sandbox has its own network namespace with only a loopback interface. While it is built
it opens a socket listening on its own 127.0.0.1:<port> and hands the descriptor to the
platform; a socket stays in the namespace it was made in, so the platform accepts the
function's connections there and relays the bytes to Ember's API over its Unix socket. Nothing
else is reachable, and no thread or proxy runs inside the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import cast


class _Upstream(asyncio.Protocol):
    """The relay's connection to Ember's API socket."""

    def __init__(self, downstream: asyncio.Transport) -> None:
        self.downstream = downstream
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.downstream.write(data)

    def eof_received(self) -> bool:
        if self.downstream.can_write_eof():
            self.downstream.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.close()


class _Relay(asyncio.Protocol):
    """One connection a function made to its 127.0.0.1:<port>."""

    def __init__(self, api_socket: Path) -> None:
        self.api_socket = api_socket
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_unix_connection(
                lambda: _Upstream(cast(asyncio.Transport, self.transport)), str(self.api_socket)
            )
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        for chunk in self.early:
            upstream.write(chunk)
        self.early.clear()
        if self.early_eof and upstream.can_write_eof():
            upstream.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def eof_received(self) -> bool:
        if self.upstream is None:
            self.early_eof = True
        elif self.upstream.can_write_eof():
            self.upstream.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(listener: socket.socket, api_socket: Path) -> asyncio.Server:
    """Relay the connections made to `listener` (a sandbox's) to Ember's API socket."""
    listener.setblocking(False)
    return await asyncio.get_running_loop().create_server(lambda: _Relay(api_socket), sock=listener)


def close(server: asyncio.Server | None) -> None:
    if server is not None:
        with contextlib.suppress(Exception):
            server.close()
