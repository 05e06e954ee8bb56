"""The platform's ends of a sandbox's channel and log pipe, over a real socketpair and pipe.

`FrameChannel` accepts exactly the frame it waits for and nothing else, ever; `LogCollector`
bounds output in bytes and lines and only reacts to the current phase's marker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ember.worker.instance import (
    LINE_OVERHEAD,
    MAX_HEADER,
    MAX_LINE,
    ChannelClosed,
    FrameChannel,
    LogCollector,
    ProtocolViolation,
)

MARKER = "\x1eember-0123456789abcdef"


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return struct.pack("!II", len(data), len(body)) + data + body


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def channel_pair(limit: int = 1024) -> tuple[FrameChannel, socket.socket, list[Exception]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    failures: list[Exception] = []
    loop = asyncio.get_running_loop()
    _, channel = await loop.connect_accepted_socket(
        lambda: FrameChannel(limit, failures.append), ours
    )
    return channel, theirs, failures


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_the_ready_frame_may_come_before_anyone_waits() -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair()
        sandbox.sendall(frame({"type": "ready"}))
        await settle()
        header, _ = await channel.next_frame()
        assert header["type"] == "ready" and not failures
        sandbox.close()

    run(case)


def test_a_result_must_name_the_request_and_come_alone() -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair()
        sandbox.sendall(frame({"type": "ready"}))
        await channel.next_frame()
        channel.expect_result("req-1")
        waiting = channel.next_frame()
        sandbox.sendall(frame({"type": "result", "request_id": "req-1"}, b'"one"'))
        assert await waiting == ({"type": "result", "request_id": "req-1"}, b'"one"')
        # Nothing is waited for now: a second result is a violation, even with the right id,
        # reported at once (the instance is destroyed) and never handed to a later invocation.
        sandbox.sendall(frame({"type": "result", "request_id": "req-1"}, b'"sneaky"'))
        await settle()
        assert len(failures) == 1 and isinstance(failures[0], ProtocolViolation)
        channel.expect_result("req-2")
        with pytest.raises(ProtocolViolation):
            await channel.next_frame()
        sandbox.close()

    run(case)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame({"type": "result", "request_id": "someone-else"}, b"1"), "another request"),
        (frame({"type": "result"}, b"1"), "another request"),
        (frame({"type": "ready"}), "'ready' frame where 'result'"),
        (frame({"type": "init_error", "error": {}}), "'init_error' frame"),
        (struct.pack("!II", MAX_HEADER + 1, 0), "oversized frame header"),
        (struct.pack("!II", 4, 0) + b"[1] ", "malformed frame header"),
        (struct.pack("!II", 3, 0) + b"{{{", "malformed frame header"),
    ],
)
def test_frames_that_are_not_the_awaited_result(data: bytes, reason: str) -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair()
        sandbox.sendall(frame({"type": "ready"}))
        await channel.next_frame()
        channel.expect_result("req-1")
        waiting = channel.next_frame()
        sandbox.sendall(data)
        with pytest.raises(ProtocolViolation, match=reason):
            await waiting
        assert not failures  # the waiting invocation gets the error; nobody else is told
        sandbox.sendall(frame({"type": "result", "request_id": "req-1"}, b"1"))
        await settle()
        channel.expect_result("req-1")
        with pytest.raises(ProtocolViolation):  # failed for good
            await channel.next_frame()
        sandbox.close()

    run(case)


def test_an_unsolicited_header_fails_before_its_body_arrives() -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair()
        sandbox.sendall(frame({"type": "ready"}))
        await channel.next_frame()
        sandbox.sendall(struct.pack("!II", 100, 1 << 30))  # the header itself never comes
        await settle()
        assert len(failures) == 1 and "nobody asked" in str(failures[0])
        assert len(channel.buffer) == 0
        sandbox.close()

    run(case)


def test_an_oversized_body_is_skipped_not_buffered() -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair(limit=1000)
        sandbox.sendall(frame({"type": "ready"}))
        await channel.next_frame()
        channel.expect_result("r")
        waiting = channel.next_frame()
        big = frame({"type": "result", "request_id": "r"}, b"x" * 200_000)
        loop = asyncio.get_running_loop()
        sender = loop.run_in_executor(None, sandbox.sendall, big)
        header, body = await waiting
        await sender
        assert header["request_id"] == "r" and body is None
        assert len(channel.buffer) < 70_000 and not failures
        sandbox.close()

    run(case)


def test_a_channel_closed_while_idle_is_reported() -> None:
    async def case() -> None:
        channel, sandbox, failures = await channel_pair()
        sandbox.sendall(frame({"type": "ready"}))
        await channel.next_frame()
        sandbox.close()
        await settle()
        assert len(failures) == 1 and isinstance(failures[0], ChannelClosed)

    run(case)


async def collector(budget: int) -> tuple[LogCollector, int, asyncio.ReadTransport]:
    read_end, write_end = os.pipe()
    loop = asyncio.get_running_loop()
    transport, logs = await loop.connect_read_pipe(
        lambda: LogCollector(MARKER, budget), os.fdopen(read_end, "rb", buffering=0)
    )
    return logs, write_end, transport


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def feed(fd: int, data: bytes) -> None:
    await asyncio.get_running_loop().run_in_executor(None, write_all, fd, data)
    await settle()


def test_the_marker_ends_a_phase_even_split_between_reads_and_mid_line() -> None:
    async def case() -> None:
        logs, fd, transport = await collector(1 << 20)
        await feed(fd, b"hello\npartial ")
        await feed(fd, f"{MARKER} in".encode())  # split inside the marker line
        assert not logs.marked
        await feed(fd, b"it\nlater\n")
        assert logs.marked
        assert [text for _, text, _ in logs.take()] == ["hello", "partial ", "later"]
        logs.begin("req-1")
        await feed(fd, f"{MARKER} someone-else\n{MARKER} init\n".encode())
        assert not logs.marked  # only the current phase's marker counts; the rest is output
        await feed(fd, f"{MARKER} req-1\n".encode())
        assert logs.marked
        lines = [text for _, text, platform in logs.take() if not platform]
        assert lines == [f"{MARKER} someone-else", f"{MARKER} init"]
        os.close(fd)
        transport.close()

    run(case)


def test_output_is_bounded_in_lines_as_well_as_bytes() -> None:
    async def case() -> None:
        budget = 100 * LINE_OVERHEAD
        logs, fd, transport = await collector(budget)
        await feed(fd, b"\n" * 1_000_000)  # empty lines are not free
        await feed(fd, b"a\n" * 1_000_000)
        lines = logs.take()
        kept = [line for line in lines if not line[2]]
        notices = [line for line in lines if line[2]]
        assert len(kept) == 100 and all(text == "" for _, text, _ in kept)
        assert len(notices) == 1 and notices[0][1].startswith("[ember] 1999900 lines dropped")
        assert logs.spent <= budget
        logs.begin("next")  # a new invocation gets a new budget
        await feed(fd, b"fresh\n")
        assert [text for _, text, _ in logs.take()] == ["fresh"]
        os.close(fd)
        transport.close()

    run(case)


def test_long_lines_become_events_of_max_line_bytes() -> None:
    async def case() -> None:
        logs, fd, transport = await collector(4 << 20)
        await feed(fd, b"x" * (MAX_LINE * 2 + 10) + b"\nend\n")
        sizes = [len(text) for _, text, _ in logs.take()]
        assert sizes == [MAX_LINE, MAX_LINE, 10, 3]
        await feed(fd, b"y" * (MAX_LINE * 30))  # over budget mid-line: counted, not kept
        await feed(fd, b"\n")
        lines = logs.take()
        assert all(len(text) <= MAX_LINE for _, text, _ in lines)
        assert lines[-1][2] and "lines dropped" in lines[-1][1]
        os.close(fd)
        transport.close()

    run(case)
