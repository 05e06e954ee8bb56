"""A server killed with SIGKILL leaves frozen sandboxes behind; the next server to start (on any
data directory) ends them and removes their cgroups."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import LiveServer, free_port
from invoking import deploy, ok

CGROUP = Path("/sys/fs/cgroup")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root")


def _base() -> Path:
    return CGROUP if (CGROUP / "cgroup.controllers").exists() else CGROUP / "memory"


def _subtree_of(pid: int) -> Path:
    """The cgroup subtree a server marked as its own (`owner-<pid>-<start time>`)."""
    for subtree in _base().glob("ember-*"):
        if any(p.name.startswith(f"owner-{pid}-") for p in subtree.iterdir()):
            return subtree
    raise AssertionError(f"no cgroup subtree is marked as server {pid}'s")


def _sandbox_pids(subtree: Path) -> list[int]:
    pids: list[int] = []
    for group in subtree.iterdir():
        if group.is_dir():
            pids += [int(p) for p in (group / "cgroup.procs").read_text().split()]
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sandboxes_of_a_killed_server_are_reaped_by_the_next(tmp_path: Path) -> None:
    first = LiveServer(tmp_path / "first", free_port())
    first.data_dir.mkdir()
    first.start()
    try:
        lam = first.client("lambda")
        name = deploy(lam, "def handler(event, context):\n    return 1\n", "orphan")
        assert ok(lam, name) == 1
        time.sleep(0.2)  # frozen now (5 ms after its invocation)
        assert first.process is not None
        subtree = _subtree_of(first.process.pid)
        pids = _sandbox_pids(subtree)
        assert pids, "the server had sandboxes (the instance and blanks)"
    finally:
        first.stop(signal.SIGKILL)
    time.sleep(0.5)
    survivors = [pid for pid in pids if _alive(pid)]
    assert survivors, "a frozen sandbox outlives its server's SIGKILL (nothing to reap otherwise)"

    second = LiveServer(tmp_path / "second", free_port())
    second.data_dir.mkdir()
    second.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)], "the dead server's sandboxes still run"
        assert not subtree.exists(), "the dead server's cgroups are still there"
        assert second.process is not None
        _subtree_of(second.process.pid)  # the new server marked its own
    finally:
        second.stop()
    assert not any(
        p.name.startswith(f"owner-{second.process.pid}-")
        for s in _base().glob("ember-*")
        for p in s.iterdir()
    ), "a server that stops cleanly removes its mark"
