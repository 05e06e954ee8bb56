"""The response transport joins a held write with the next one, and never holds past a turn."""

from __future__ import annotations

import asyncio
import socket

from ember.api.http_protocol import _CoalescingTransport


async def _pair() -> tuple[_CoalescingTransport, socket.socket]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    theirs.setblocking(False)
    return _CoalescingTransport(transport, loop), theirs  # type: ignore[arg-type]


def _received(peer: socket.socket) -> list[bytes]:
    chunks = []
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return chunks
        if not chunk:
            return chunks
        chunks.append(chunk)


def test_headers_and_body_leave_in_one_send() -> None:
    async def scenario() -> list[bytes]:
        transport, peer = await _pair()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert _received(peer) == []  # held until the body comes
        transport.write(b"{}")
        await asyncio.sleep(0.01)
        chunks = _received(peer)
        transport.close()
        peer.close()
        return chunks

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_a_lone_write_goes_out_at_the_end_of_the_turn_and_close_flushes() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        transport, peer = await _pair()
        transport.write(b"alone")
        await asyncio.sleep(0.01)
        first = _received(peer)
        transport.write(b"last words")
        transport.close()
        await asyncio.sleep(0.01)
        second = _received(peer)
        peer.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert first == [b"alone"]
    assert second == [b"last words"]
