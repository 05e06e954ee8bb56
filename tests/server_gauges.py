"""What a test reads of a live server's process: descriptors and memory, from /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import LiveServer


def pid(server: LiveServer) -> int:
    assert server.process is not None
    assert server.process.poll() is None, "the server died:\n" + server.log()[-3000:]
    return server.process.pid


def fd_count(server: LiveServer) -> int:
    return len(os.listdir(f"/proc/{pid(server)}/fd"))


def rss_mb(server: LiveServer) -> float:
    for line in Path(f"/proc/{pid(server)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def settled_fds(server: LiveServer, target: int | None = None, wait_s: float = 30.0) -> int:
    """The server's descriptor count once it is at most `target`, or (without a target) once it
    has not moved for two seconds (the blank sandbox pool fills up after a start or a claim)."""
    deadline = time.monotonic() + wait_s
    last, same = fd_count(server), 0
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = fd_count(server)
        if target is not None and now <= target:
            return now
        same = same + 1 if now == last else 0
        if target is None and same >= 8:
            return now
        last = now
    return last
