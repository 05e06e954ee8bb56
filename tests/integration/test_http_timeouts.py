"""Hostile clients against the main port: slowloris headers, bodies shorter than their
Content-Length, idle sockets, deep pipelining, and more held connections than the server
takes. None of them keeps the server's descriptors or memory, and real clients get through.

The server here runs with RLIMIT_NOFILE 4096, so its TCP connection cap (a quarter of the
limit, api/http_protocol.py) is 1,024 and this test can go past it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import LiveServer, free_port
from invoking import deploy, ok
from server_gauges import fd_count, rss_mb, settled_fds

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root")

NOFILE = 4096
TCP_CAP = NOFILE // 4
NORMAL = "def handler(event, context):\n    return 'still here'\n"


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("http") / "data", free_port(), nofile=NOFILE)
    live.start()
    yield live
    assert live.process is not None
    assert live.process.poll() is None, "the server died:\n" + live.log()[-3000:]
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def health(server: LiveServer) -> int:
    with urllib.request.urlopen(server.endpoint + "/health", timeout=10) as r:
        return int(r.status)


def test_slow_headers_short_bodies_and_idle_sockets_are_cut_off(own_server: LiveServer) -> None:
    before = settled_fds(own_server)
    slowloris = [connect(own_server) for _ in range(20)]
    for sock in slowloris:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    short = [connect(own_server) for _ in range(20)]
    for sock in short:
        sock.sendall(
            b"POST /2015-03-31/functions/nothing/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"only": "a part"'
        )
    idle = [connect(own_server) for _ in range(20)]
    blank = [connect(own_server) for _ in range(10)]  # blank lines, which begin no request
    answers: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(answers) < 70:
        for group, drip in ((slowloris, b"X-Drip: 1\r\n"), (blank, b"\r\n")):
            for sock in group:
                if sock not in answers:
                    try:
                        sock.sendall(drip)  # a line a second, never the end of a request
                    except OSError:
                        answers[sock] = b""
        for sock in slowloris + short + idle + blank:
            if sock not in answers:
                got = _read_if_closed(sock)
                if got is not None:
                    answers[sock] = got
        time.sleep(1.0)
    assert all(sock in answers for sock in slowloris), "a slowloris connection is still open"
    assert all(sock in answers for sock in idle), "an idle connection is still open"
    assert all(sock in answers for sock in blank), "a connection sending blank lines is open"
    assert all(sock in answers for sock in short), "a short-body connection is still open"
    for sock in short:
        head, _, body = answers[sock].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), answers[sock]
        assert b"x-amzn-errortype: RequestTimeoutException" in head
        assert json.loads(body)["Type"] == "User"
    for sock in slowloris + short + idle + blank:
        sock.close()
    assert settled_fds(own_server, target=before + 8) <= before + 8
    assert health(own_server) == 200


def _read_if_closed(sock: socket.socket) -> bytes | None:
    data = b""
    sock.setblocking(False)
    try:
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return None if not data else _rest(sock, data)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
    finally:
        sock.setblocking(True)


def _rest(sock: socket.socket, data: bytes) -> bytes:
    """Some bytes arrived: read on until the server closes (it always does after an error)."""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def test_a_half_closed_request_is_still_answered(own_server: LiveServer) -> None:
    """The client sends its request and shuts its side (SHUT_WR): the answer still comes."""
    name = deploy(own_server.client("lambda"), NORMAL, "halfclosed")
    request = (
        f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    for _ in range(5):
        sock = connect(own_server)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = _rest(sock, b"")  # then the server closes
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert answer.endswith(b'"still here"'), answer


def test_deep_pipelining_is_refused(own_server: LiveServer) -> None:
    rss_before = rss_mb(own_server)
    sock = connect(own_server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 20000)
    received = _rest(sock, b"")
    sock.close()
    assert received.count(b"HTTP/1.1 200 OK") < 200
    assert b"HTTP/1.1 400 " in received
    assert rss_mb(own_server) - rss_before < 32
    assert health(own_server) == 200


def test_more_held_connections_than_the_cap_leave_room_for_real_clients(
    own_server: LiveServer,
) -> None:
    lam: Any = own_server.client("lambda")
    before = settled_fds(own_server)
    rss_before = rss_mb(own_server)
    held = []
    for i in range(TCP_CAP + 500):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", own_server.port))
        if i % 2:
            with contextlib.suppress(OSError):
                sock.send(b"GET /health HTTP/1.1\r\nHo")  # some are mid-request too
        held.append(sock)
    time.sleep(1.0)
    during = fd_count(own_server)
    rss_during = rss_mb(own_server)
    # A new client evicts the longest-waiting idle connection; requests in progress are kept.
    assert health(own_server) == 200
    name = deploy(lam, NORMAL, "during")
    assert ok(lam, name) == "still here"
    print(
        f"server fds {before} -> {during} holding {len(held)}; RSS {rss_before:.1f} -> "
        f"{rss_during:.1f} MB"
    )
    assert during <= before + TCP_CAP + 16
    for sock in held:
        sock.close()
    after = settled_fds(own_server, target=before + 16)
    assert after <= before + 16  # + the new function's instance
    assert health(own_server) == 200
