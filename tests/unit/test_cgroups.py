"""cgroup v1 instance groups on this host, for real: create, limits, freeze/thaw, kill, remove.

Every test works under a parent of its own (`ember-unit-<random>`), so it never touches a
running server's sandboxes, and removes it afterwards.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ember.sandbox.cgroups import CPU_PERIOD_US, FULL_CORE_MB, V1Cgroup, V1Driver, cpu_quota_us

ROOT = Path("/sys/fs/cgroup")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
    pytest.mark.skipif(
        not (ROOT / "memory" / "memory.limit_in_bytes").exists()
        or (ROOT / "cgroup.controllers").exists(),
        reason="not a cgroup v1 host",
    ),
]


@pytest.fixture
def driver() -> Iterator[V1Driver]:
    parent = f"ember-unit-{uuid.uuid4().hex[:8]}"
    created = V1Driver(ROOT, parent)
    yield created
    created.cleanup_stale()
    created.close()
    for controller in V1Cgroup.CONTROLLERS:
        assert not (ROOT / controller / parent).exists()


def read(path: Path) -> str:
    return path.read_text().strip()


def join(group: V1Cgroup) -> Callable[[], None]:
    """A preexec_fn: the child joins `group` before it execs, so all it does is charged there."""
    files = group.procs_files()

    def enter() -> None:
        for path in files:
            with open(path, "w") as f:
                f.write(str(os.getpid()))

    return enter


def start_in(group: V1Cgroup, code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=join(group),
    )


TICKER = "import time\nwhile True:\n    print(time.time(), flush=True)\n    time.sleep(0.01)\n"


FORKER = """
import os
import time

forked = 0
try:
    for _ in range(50):
        if os.fork() == 0:
            os.close(1)
            time.sleep(30)
            os._exit(0)
        forked += 1
except OSError as exc:
    print(forked, exc.errno, flush=True)
"""


def wait_for_state(group: V1Cgroup, state: str) -> None:
    path = group.dirs["freezer"] / "freezer.state"
    deadline = time.monotonic() + 10
    while read(path) != state:
        assert time.monotonic() < deadline, f"freezer stuck in {read(path)}, wanted {state}"
        time.sleep(0.01)


def readable(pipe: int, timeout: float) -> bool:
    return bool(select.select([pipe], [], [], timeout)[0])


def test_create_writes_the_limits(driver: V1Driver) -> None:
    group = driver.create("limits", memory_mb=256, pids_max=64)
    for controller in V1Cgroup.CONTROLLERS:
        assert (ROOT / controller / driver.parent / "limits").is_dir()
    memory = group.dirs["memory"]
    assert read(memory / "memory.limit_in_bytes") == str(256 * 1024 * 1024)
    assert read(memory / "memory.swappiness") == "0"
    assert read(group.dirs["pids"] / "pids.max") == "64"
    assert read(group.dirs["cpu"] / "cpu.shares") == "1024"  # a full share until init is over
    assert group.procs_files() == [
        str(ROOT / c / driver.parent / "limits" / "cgroup.procs") for c in V1Cgroup.CONTROLLERS
    ]
    # A claim re-sizes the group; the CPU share and quota the memory buys come after init.
    group.configure(1769)
    assert read(memory / "memory.limit_in_bytes") == str(1769 * 1024 * 1024)
    assert read(group.dirs["cpu"] / "cpu.shares") == "1024"
    group.limit_cpu()
    assert read(group.dirs["cpu"] / "cpu.shares") == str(1024 * 1769 // FULL_CORE_MB)
    assert read(group.dirs["cpu"] / "cpu.cfs_period_us") == str(CPU_PERIOD_US)
    assert read(group.dirs["cpu"] / "cpu.cfs_quota_us") == str(cpu_quota_us(1769))
    assert cpu_quota_us(1769) == CPU_PERIOD_US  # 1769 MB buys one full core
    assert group.oom_kills() == 0
    group.remove()
    for directory in group.dirs.values():
        assert not directory.exists()


def test_freeze_stops_every_process_and_thaw_resumes_them(driver: V1Driver) -> None:
    group = driver.create("freezer", memory_mb=128, pids_max=64)
    child = start_in(group, TICKER)
    assert child.stdout is not None
    out = child.stdout.fileno()
    try:
        assert readable(out, 10), "the child never ran"
        assert str(child.pid) in read(group.dirs["freezer"] / "cgroup.procs").split()
        assert group.peak_memory_bytes() > 1024 * 1024  # its interpreter, charged here

        group.freeze()
        wait_for_state(group, "FROZEN")
        os.read(out, 1 << 16)  # what it printed before the freeze took hold
        assert not readable(out, 0.3), "a frozen process kept running"

        group.thaw()
        wait_for_state(group, "THAWED")
        assert readable(out, 10), "the thawed process did not resume"
    finally:
        group.kill()
        child.wait(10)
        group.remove()
    assert child.returncode == -signal.SIGKILL


def test_kill_ends_every_process_even_frozen_ones(driver: V1Driver) -> None:
    group = driver.create("kill", memory_mb=128, pids_max=64)
    code = "import os, time\nfor _ in range(3):\n    os.fork()\ntime.sleep(60)\n"  # 8 processes
    child = start_in(group, code)
    procs = group.dirs["pids"] / "cgroup.procs"
    deadline = time.monotonic() + 10
    while len(read(procs).split()) < 8:
        assert time.monotonic() < deadline, read(procs)
        time.sleep(0.01)
    group.freeze()
    group.kill()
    assert read(procs) == ""
    assert child.wait(10) == -signal.SIGKILL
    group.remove()
    assert not any(d.exists() for d in group.dirs.values())


def test_memory_and_pids_limits_are_enforced(driver: V1Driver) -> None:
    group = driver.create("enforced", memory_mb=64, pids_max=8)
    forker = start_in(group, FORKER)
    out, _ = forker.communicate(timeout=30)
    forked, error = out.split()
    assert int(forked) < 8 and int(error) == 11  # EAGAIN at pids.max
    group.kill()

    hog = start_in(group, "blocks = [b'x' * (1 << 20) for _ in range(256)]\nprint('survived')\n")
    out, _ = hog.communicate(timeout=30)
    assert out == b""
    assert hog.returncode == -signal.SIGKILL
    assert group.oom_kills() >= 1
    assert group.peak_memory_bytes() <= 64 * 1024 * 1024
    group.kill()
    group.remove()


def test_cleanup_stale_removes_what_a_previous_server_left(driver: V1Driver) -> None:
    group = driver.create("left-behind", memory_mb=128, pids_max=64)
    child = start_in(group, "import time\ntime.sleep(60)\n")
    deadline = time.monotonic() + 10
    while not read(group.dirs["memory"] / "cgroup.procs"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    again = V1Driver(ROOT, driver.parent)  # a new server on the same subtree
    assert again.cleanup_stale() == 1
    assert child.wait(10) == -signal.SIGKILL
    assert not any(d.exists() for d in group.dirs.values())
