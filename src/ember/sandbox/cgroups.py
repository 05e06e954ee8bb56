"""Per-instance cgroups behind one interface, for cgroup v1 (this machine) and v2 (most hosts).

Each instance gets memory (limit, peak, OOM kills), CPU (shares/weight proportional to memory,
plus a quota), pids and a freezer. All writes go straight to cgroupfs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Protocol

FULL_CORE_MB = 1769  # Lambda: 1769 MB of memory buys one vCPU
CPU_PERIOD_US = 100_000


INIT_SHARES = 1024  # a full share while the runtime initialises


def cpu_shares(memory_mb: int) -> int:
    return max(2, 1024 * memory_mb // FULL_CORE_MB)


def _weight(shares: int) -> int:
    """cgroup v2's cpu.weight (1..10000, default 100) for a v1 cpu.shares (2..262144, 1024)."""
    return max(1, min(10000, 1 + (shares - 2) * 9999 // 262142))


def cpu_quota_us(memory_mb: int) -> int:
    return max(1000, CPU_PERIOD_US * memory_mb // FULL_CORE_MB)


class Cgroup(Protocol):
    name: str

    def procs_files(self) -> list[str]:
        """Files a process writes its pid to, to join this cgroup."""

    def configure(self, memory_mb: int) -> None:
        """Memory limit for the function that claims the sandbox; CPU at a full share for init."""

    def limit_cpu(self) -> None:
        """The CPU share and quota the memory size buys (after init, so start-up runs at full
        speed, as Lambda's does)."""

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def peak_memory_bytes(self) -> int: ...

    def oom_kills(self) -> int: ...

    def cpu_usage_ns(self) -> int:
        """CPU time the cgroup's processes have used (as the kernel last accounted it: a task
        still running may have up to one scheduler tick not counted yet)."""

    def kill(self) -> None:
        """SIGKILL every process in the cgroup."""

    def remove(self) -> None: ...


class CgroupDriver(Protocol):
    version: int
    root: Path  # the cgroup file systems' mount point (a zygote needs it: zygote/layout.py)

    def create(self, name: str, memory_mb: int, pids_max: int) -> Cgroup: ...

    def cleanup_stale(self) -> int:
        """Kill and remove instance cgroups a previous server left behind; returns how many."""

    def close(self) -> None:
        """Remove this server's (empty) parent cgroup."""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _kill_pids(procs: Path) -> bool:
    """SIGKILL every pid listed; False once the list is empty."""
    try:
        pids = [int(p) for p in _read(procs).split()]
    except FileNotFoundError:
        return False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


class _Files:
    """Open cgroup control files kept open: a pwrite/pread is ~20x cheaper than open+write."""

    def __init__(self) -> None:
        self.fds: dict[Path, int] = {}

    def _fd(self, path: Path, flags: int) -> int:
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(path, flags | os.O_CLOEXEC)
        return fd

    def write(self, path: Path, value: bytes) -> None:
        os.pwrite(self._fd(path, os.O_WRONLY), value, 0)

    def open_for_writing(self, *paths: Path) -> None:
        """Open ahead (while building a blank) what a claim and its first invoke will write."""
        for path in paths:
            self._fd(path, os.O_WRONLY)

    def read(self, path: Path) -> str:
        return os.pread(self._fd(path, os.O_RDONLY), 4096, 0).decode()

    def fd(self, path: Path) -> int:
        """A descriptor to pread `path` from, open until close()."""
        return self._fd(path, os.O_RDONLY)

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _rmdir(path: Path, attempts: int = 200) -> None:
    for _ in range(attempts):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.005)


def _v1_controllers(root: Path) -> tuple[str, ...]:
    """The v1 hierarchies an instance joins; cpuacct (CPU usage, for billing) only if mounted."""
    return tuple(c for c in V1Cgroup.CONTROLLERS if c != "cpuacct" or (root / c).is_dir())


class V1Cgroup:
    CONTROLLERS = ("memory", "cpu", "pids", "freezer", "cpuacct")

    def __init__(self, root: Path, parent: str, name: str) -> None:
        self.name = name
        self.dirs = {c: root / c / parent / name for c in _v1_controllers(root)}
        self.files = _Files()

    def setup(self, memory_mb: int, pids_max: int) -> None:
        for directory in self.dirs.values():
            directory.mkdir(exist_ok=True)
        _write(self.dirs["memory"] / "memory.swappiness", "0")
        _write(self.dirs["pids"] / "pids.max", str(pids_max))
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        self.files.open_for_writing(
            self.dirs["memory"] / "memory.limit_in_bytes",
            self.dirs["cpu"] / "cpu.shares",
            self.dirs["cpu"] / "cpu.cfs_quota_us",
            self.dirs["freezer"] / "freezer.state",
        )
        with contextlib.suppress(OSError, ValueError):  # opens what every invocation reads
            self.peak_memory_bytes()
            self.cpu_usage_ns()
        self.configure(memory_mb)

    def configure(self, memory_mb: int) -> None:
        # Only what changes is written: a claim of a blank built with the same size writes
        # nothing. memory.memsw is left alone: without swap it only slows the OOM killer down.
        if getattr(self, "memory_mb", None) != memory_mb:
            self.files.write(
                self.dirs["memory"] / "memory.limit_in_bytes", b"%d" % (memory_mb * 1024 * 1024)
            )
        if getattr(self, "shares", None) != INIT_SHARES:
            self.files.write(self.dirs["cpu"] / "cpu.shares", b"%d" % INIT_SHARES)
        self.memory_mb = memory_mb
        self.shares = INIT_SHARES

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def limit_cpu(self) -> None:
        self.shares = cpu_shares(self.memory_mb)
        self.files.write(self.dirs["cpu"] / "cpu.shares", b"%d" % self.shares)
        self.files.write(
            self.dirs["cpu"] / "cpu.cfs_quota_us", b"%d" % cpu_quota_us(self.memory_mb)
        )

    def freeze(self) -> None:
        self.files.write(self.dirs["freezer"] / "freezer.state", b"FROZEN")

    def thaw(self) -> None:
        self.files.write(self.dirs["freezer"] / "freezer.state", b"THAWED")

    # Read after every invocation: their descriptors are kept at hand (a Path join and lookup
    # cost ~5 µs, more than the read).
    _peak_fd: int | None = None
    _cpu_fd: int | None = None

    def peak_memory_bytes(self) -> int:
        if self._peak_fd is None:
            path = self.dirs["memory"] / "memory.max_usage_in_bytes"
            self._peak_fd = self.files.fd(path)
        return int(os.pread(self._peak_fd, 32, 0))

    def cpu_usage_ns(self) -> int:
        if self._cpu_fd is None:
            if "cpuacct" not in self.dirs:
                raise FileNotFoundError("no cpuacct hierarchy")
            self._cpu_fd = self.files.fd(self.dirs["cpuacct"] / "cpuacct.usage")
        return int(os.pread(self._cpu_fd, 32, 0))

    def oom_kills(self) -> int:
        for line in _read(self.dirs["memory"] / "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.freeze()
        procs = self.dirs["freezer"] / "cgroup.procs"
        _kill_pids(procs)
        with contextlib.suppress(OSError):
            self.thaw()
        for _ in range(400):
            if not _kill_pids(procs):
                break
            time.sleep(0.005)

    def remove(self) -> None:
        self.files.close()
        self._peak_fd = self._cpu_fd = None  # closed: their numbers may be reused
        for directory in self.dirs.values():
            _rmdir(directory)


class V1Driver:
    version = 1

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), parent: str = "ember") -> None:
        self.root = root
        self.parent = parent
        for controller in _v1_controllers(root):
            (root / controller / parent).mkdir(exist_ok=True)
        # Children inherit cpuset masks from the parent (they start empty on some kernels).
        cpuset = root / "cpuset" / parent
        if (root / "cpuset").is_dir():
            cpuset.mkdir(exist_ok=True)

    def create(self, name: str, memory_mb: int, pids_max: int) -> V1Cgroup:
        group = V1Cgroup(self.root, self.parent, name)
        try:
            group.setup(memory_mb, pids_max)
        except BaseException:
            group.remove()
            raise
        return group

    def cleanup_stale(self) -> int:
        names = {p.name for p in (self.root / "memory" / self.parent).iterdir() if p.is_dir()}
        for name in names:
            group = V1Cgroup(self.root, self.parent, name)
            group.kill()
            group.remove()
        return len(names)

    def close(self) -> None:
        for controller in (*_v1_controllers(self.root), "cpuset"):
            _rmdir(self.root / controller / self.parent, attempts=1)


class V2Cgroup:
    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.path = path
        self.files = _Files()

    def setup(self, memory_mb: int, pids_max: int) -> None:
        self.path.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            _write(self.path / "memory.swap.max", "0")
        _write(self.path / "pids.max", str(pids_max))
        self.files.open_for_writing(
            self.path / "memory.max",
            self.path / "cpu.weight",
            self.path / "cpu.max",
            self.path / "cgroup.freeze",
        )
        with contextlib.suppress(OSError, ValueError):  # opens what every invocation reads
            self.peak_memory_bytes()
            self.cpu_usage_ns()
        self.configure(memory_mb)

    def configure(self, memory_mb: int) -> None:
        if getattr(self, "memory_mb", None) != memory_mb:  # only what changes is written
            self.files.write(self.path / "memory.max", b"%d" % (memory_mb * 1024 * 1024))
        if getattr(self, "shares", None) != INIT_SHARES:
            self.files.write(self.path / "cpu.weight", b"%d" % _weight(INIT_SHARES))
        self.memory_mb = memory_mb
        self.shares = INIT_SHARES

    def procs_files(self) -> list[str]:
        return [str(self.path / "cgroup.procs")]

    def limit_cpu(self) -> None:
        self.shares = cpu_shares(self.memory_mb)
        self.files.write(self.path / "cpu.weight", b"%d" % _weight(self.shares))
        self.files.write(
            self.path / "cpu.max", b"%d %d" % (cpu_quota_us(self.memory_mb), CPU_PERIOD_US)
        )

    def freeze(self) -> None:
        self.files.write(self.path / "cgroup.freeze", b"1")

    def thaw(self) -> None:
        self.files.write(self.path / "cgroup.freeze", b"0")

    # Read after every invocation: their descriptors are kept at hand (see V1Cgroup).
    _peak_fd: int | None = None
    _cpu_fd: int | None = None

    def peak_memory_bytes(self) -> int:
        if self._peak_fd is None:
            try:
                self._peak_fd = self.files.fd(self.path / "memory.peak")
            except FileNotFoundError:  # kernels before 5.19
                self._peak_fd = self.files.fd(self.path / "memory.current")
        return int(os.pread(self._peak_fd, 32, 0))

    def cpu_usage_ns(self) -> int:
        if self._cpu_fd is None:
            self._cpu_fd = self.files.fd(self.path / "cpu.stat")
        text = os.pread(self._cpu_fd, 512, 0)  # "usage_usec N\n..."
        start = text.index(b"usage_usec ") + 11
        return int(text[start : text.index(b"\n", start)]) * 1000

    def oom_kills(self) -> int:
        for line in _read(self.path / "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill(self) -> None:
        try:
            _write(self.path / "cgroup.kill", "1")
        except OSError:
            _kill_pids(self.path / "cgroup.procs")
        for _ in range(400):
            if not _kill_pids(self.path / "cgroup.procs"):
                break
            time.sleep(0.005)

    def remove(self) -> None:
        self.files.close()
        self._peak_fd = self._cpu_fd = None  # closed: their numbers may be reused
        _rmdir(self.path)


class V2Driver:
    version = 2

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), parent: str = "ember") -> None:
        self.root = root
        self.parent = root / parent
        self.parent.mkdir(exist_ok=True)
        available = _read(root / "cgroup.controllers").split()
        wanted = [c for c in ("memory", "cpu", "pids") if c in available]
        missing = {"memory", "cpu", "pids"} - set(wanted)
        if missing:
            raise RuntimeError(
                f"cgroup v2 at {root} lacks controllers: {', '.join(sorted(missing))}"
            )
        _write(root / "cgroup.subtree_control", " ".join("+" + c for c in wanted))
        _write(self.parent / "cgroup.subtree_control", " ".join("+" + c for c in wanted))

    def create(self, name: str, memory_mb: int, pids_max: int) -> V2Cgroup:
        group = V2Cgroup(self.parent / name)
        try:
            group.setup(memory_mb, pids_max)
        except BaseException:
            group.remove()
            raise
        return group

    def cleanup_stale(self) -> int:
        stale = [p for p in self.parent.iterdir() if p.is_dir()]
        for path in stale:
            group = V2Cgroup(path)
            group.kill()
            group.remove()
        return len(stale)

    def close(self) -> None:
        _rmdir(self.parent, attempts=1)


def detect(parent: str = "ember", root: Path = Path("/sys/fs/cgroup")) -> CgroupDriver:
    """v2 when /sys/fs/cgroup is a unified hierarchy with the controllers; else v1.

    `parent` names this server's own subtree, so servers sharing a host never touch each
    other's sandboxes (stale clean-up included).
    """
    if (root / "cgroup.controllers").exists():
        return V2Driver(root, parent)
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return V1Driver(root, parent)
    raise RuntimeError(f"no usable cgroup hierarchy under {root}")
