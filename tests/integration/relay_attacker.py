"""A hostile function: it hammers its own AWS_ENDPOINT_URL (the platform's API relay).

Deployed as `app.py` by tests/integration/test_relay_hardening.py (and bench/relay_attack.py).
Standard library only. The event names the patterns and how long each runs; the handler
answers with what it managed to do, so a test can check that the attack really happened.
"""

import contextlib
import errno
import os
import socket
import struct
import time
import urllib.parse

ENDPOINT = urllib.parse.urlsplit(os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"))
ADDRESS = (ENDPOINT.hostname or "127.0.0.1", ENDPOINT.port or 80)
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HELD = []  # sockets kept open after the handler returns ("hold" with keep=True)


def _connect(timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(ADDRESS)
    return s


def _drain(s, limit=1 << 20):
    """Read until EOF (or the timeout, or `limit` bytes); returns the byte count."""
    got = 0
    try:
        while got < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass
    return got


def _reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def connect_close(stats):
    _connect().close()


def half_close(stats):
    s = _connect()
    s.shutdown(socket.SHUT_WR)
    _drain(s)
    s.close()


def half_close_request(stats):
    s = _connect()
    s.sendall(HEALTH)
    s.shutdown(socket.SHUT_WR)
    stats["bytes"] = stats.get("bytes", 0) + _drain(s)
    s.close()


def half_close_and_leave(stats):
    s = _connect()
    s.sendall(HEALTH)
    s.shutdown(socket.SHUT_WR)
    s.close()


def request_and_close(stats):
    s = _connect()
    s.sendall(HEALTH)
    s.close()


def partial_request(stats):
    s = _connect()
    s.sendall(b"GET /health HTTP/1.1\r\nHo")
    s.close()


def short_body(stats):
    s = _connect()
    s.sendall(
        b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        b'Content-Length: 100000\r\n\r\n{"a":'
    )
    s.close()


def reset(stats):
    _reset(_connect())


def reset_after_request(stats):
    s = _connect()
    s.sendall(HEALTH)
    _reset(s)


def reset_mid_response(stats):
    s = _connect()
    s.sendall(HEALTH * 50)
    s.recv(100)
    _reset(s)


def slow_reader(stats):
    """Pipeline many requests and read nothing for a while: the responses pile up upstream."""
    s = _connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    burst = HEALTH * 2000
    sent = 0
    deadline = time.monotonic() + 1.0
    s.setblocking(False)
    while time.monotonic() < deadline:
        try:
            sent += s.send(burst[sent % len(burst) :])
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    stats["pipelined"] = stats.get("pipelined", 0) + sent // len(HEALTH)
    time.sleep(0.5)
    s.setblocking(True)
    s.settimeout(0.5)
    stats["bytes"] = stats.get("bytes", 0) + _drain(s, 256 * 1024)
    s.close()


def hold(stats, keep=False):
    """Open as many connections as the descriptor limit allows and hold them for a moment."""
    sockets = []
    try:
        while True:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    break
                raise
            s.setblocking(False)
            try:
                s.connect(ADDRESS)
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                break
            if len(sockets) % 2:
                with contextlib.suppress(OSError):
                    s.send(b"GET /health HTTP/1.1\r\nHo")
            sockets.append(s)
    finally:
        stats["held"] = max(stats.get("held", 0), len(sockets))
        time.sleep(0.5)
        if keep:
            HELD.extend(sockets)
        else:
            for s in sockets:
                s.close()


PATTERNS = {
    f.__name__: f
    for f in (
        connect_close,
        half_close,
        half_close_request,
        half_close_and_leave,
        request_and_close,
        partial_request,
        short_body,
        reset,
        reset_after_request,
        reset_mid_response,
        slow_reader,
        hold,
    )
}


def handler(event, context):
    seconds = float(event.get("seconds", 1.0))
    report = {}
    for name in event.get("patterns", list(PATTERNS)):
        attack = PATTERNS[name]
        stats = {"rounds": 0, "errors": 0}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if name == "hold":
                    attack(stats, keep=bool(event.get("keep")))
                else:
                    attack(stats)
                stats["rounds"] += 1
            except OSError as exc:
                stats["errors"] += 1
                stats["last_error"] = str(exc)
                time.sleep(0.001)
            if name == "hold" and event.get("keep"):
                break
        report[name] = stats
    return report
