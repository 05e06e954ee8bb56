"""The API relay on uvloop (the server's loop), between real sockets: a TCP listener standing
for a sandbox's 127.0.0.1:<port> and a Unix socket server standing for Ember's API socket.

The whole platform is exercised by tests/integration/test_relay_hardening.py; these check the
relay's own rules closely and fast: half-closes pass through, nothing a client does leaves a
descriptor behind or lets the relay buffer without bound, and close() ends every connection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from ember.worker import api_relay
from ember.worker.api_relay import SandboxRelay


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Upstream:
    """A Unix socket server: answers b"pong:" + what it read once the client half-closes,
    streams `flood` bytes as soon as a connection sends anything, or (`echo`) sends back
    everything it reads as it reads it."""

    def __init__(self, flood: int = 0, echo: bool = False) -> None:
        self.flood = flood
        self.echo = echo
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            if self.echo:
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            elif self.flood:
                await reader.read(1)
                chunk = b"x" * 65536
                for _ in range(self.flood // len(chunk)):
                    writer.write(chunk)
                    await writer.drain()
            else:
                data = await reader.read()
                writer.write(b"pong:" + data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def _with_relay(
    upstream: Upstream, body: Callable[[SandboxRelay, tuple[str, int]], Awaitable[None]]
) -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "api.sock"
        server = await asyncio.start_unix_server(upstream.handle, path=str(path))
        listener = socket.create_server(("127.0.0.1", 0))
        relay = await api_relay.serve(listener, path)
        try:
            await body(relay, listener.getsockname())
        finally:
            relay.close()
            await asyncio.sleep(0.05)
            listener.close()
            server.close()
            for writer in upstream.writers:
                writer.close()
            await asyncio.sleep(0.05)
    assert loop.is_running()


async def _client(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return sock


async def _read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < limit:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        except ConnectionError:
            break
        if not chunk:
            break
        data += chunk
    return data


async def _settle(relay: SandboxRelay) -> None:
    for _ in range(200):
        if len(relay) == 0:
            return
        await asyncio.sleep(0.01)


def test_a_half_close_passes_through_and_the_answer_comes_back() -> None:
    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        sock = await _client(address)
        await asyncio.get_running_loop().sock_sendall(sock, b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert await _read_all(sock) == b"pong:ping"
        sock.close()
        await _settle(relay)
        assert len(relay) == 0

    uvloop.run(_with_relay(Upstream(), body))


def test_connection_patterns_leave_no_descriptor_and_survive_collection() -> None:
    """Connect/close, half-close with and without data, resets: each many times, with the
    garbage collector run in between (it freed transports with a pending shutdown before)."""

    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        before = fds()
        upstream_seen = 0
        for i in range(300):
            sock = await _client(address)
            kind = i % 5
            if kind == 1:
                sock.shutdown(socket.SHUT_WR)
            elif kind == 2:
                await loop.sock_sendall(sock, b"data")
                sock.shutdown(socket.SHUT_WR)
                upstream_seen += 1
            elif kind == 3:
                await loop.sock_sendall(sock, b"data")
                upstream_seen += 1
            elif kind == 4:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            sock.close()
            if i % 10 == 0:
                gc.collect()
                await asyncio.sleep(0)
        await _settle(relay)
        gc.collect()
        await asyncio.sleep(0.05)
        assert len(relay) == 0
        assert fds() <= before + 2  # the upstream server's own sockets may still be closing

    uvloop.run(_with_relay(Upstream(), body))


def test_connections_beyond_the_cap_wait_in_the_backlog() -> None:
    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        socks = [await _client(address) for _ in range(api_relay.MAX_CONNECTIONS + 40)]
        await asyncio.sleep(0.2)
        assert len(relay) == api_relay.MAX_CONNECTIONS
        for sock in socks[:10]:
            sock.close()
        await asyncio.sleep(0.2)
        assert len(relay) == api_relay.MAX_CONNECTIONS  # the waiting ones took their places
        for sock in socks[10:]:
            sock.close()
        await _settle(relay)
        assert len(relay) == 0

    uvloop.run(_with_relay(Upstream(), body))


def test_a_slow_reader_cannot_make_the_relay_buffer_much() -> None:
    """The API streams 64 MB to a client that reads nothing: the relay pauses the API side."""
    upstream = Upstream(flood=64 * 1024 * 1024)

    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        sock = await _client(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await asyncio.get_running_loop().sock_sendall(sock, b"go")
        await asyncio.sleep(1.0)
        (link,) = relay.links
        assert link.down is not None and link.up is not None
        held = link.down.get_write_buffer_size() + link.up.get_write_buffer_size()
        assert held <= 2 * (api_relay.HIGH_WATER + api_relay.READ_CHUNK)
        assert upstream.writers[0].transport.get_write_buffer_size() > 0  # the API side waits
        sock.close()

    uvloop.run(_with_relay(upstream, body))


def test_large_transfers_both_ways_arrive_intact() -> None:
    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        sock = await _client(address)
        payload = os.urandom(8 * 1024 * 1024)

        async def send() -> None:
            await loop.sock_sendall(sock, payload)
            sock.shutdown(socket.SHUT_WR)

        sending = asyncio.create_task(send())
        echoed = await _read_all(sock, limit=len(payload) + 1)
        await sending
        sock.close()
        assert echoed == payload

    uvloop.run(_with_relay(Upstream(echo=True), body))


def test_close_ends_every_connection_of_the_sandbox() -> None:
    async def body(relay: SandboxRelay, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        before = fds()
        socks = [await _client(address) for _ in range(20)]
        for sock in socks[::2]:
            await loop.sock_sendall(sock, b"half a request")  # these have an upstream too
        await asyncio.sleep(0.2)
        assert len(relay) == 20
        relay.close()
        for sock in socks:
            assert await _read_all(sock) == b""  # closed (or reset) by the relay
            sock.close()
        await _settle(relay)
        await asyncio.sleep(0.05)
        assert len(relay) == 0
        assert fds() <= before + 2

    uvloop.run(_with_relay(Upstream(), body))
