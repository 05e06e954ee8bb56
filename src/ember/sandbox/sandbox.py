"""Sandboxes: build blank ones ahead of demand, claim one for a function, destroy it.

Mechanism only: this module knows interpreters, limits, binds and environment variables, never
functions. A blank sandbox already has its cgroup, namespaces, private root, /proc, network
and /tmp (a disk of its own, tmp_disk.py, or a tmpfs); claiming it reserves the /tmp size on
the host's disk and caps the disk at it, then sends one frame (code directory, environment,
runtime arguments) and the sandbox attaches the code, drops its privileges and starts the
runtime. A pool of blanks
per interpreter keeps that setup off the cold-start path. A sandbox that hit any error is
destroyed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import struct
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ember.sandbox import cgroup_owner
from ember.sandbox.cgroups import Cgroup, CgroupDriver, V1Driver, V2Driver, detect
from ember.sandbox.seccomp import build_programs
from ember.sandbox.tmp_disk import TmpDisk, TmpDiskFull, TmpDisks, TmpDiskUnavailable
from ember.sandbox.zygote import layout
from ember.sandbox.zygote_client import Zygote, close_quietly

log = logging.getLogger(__name__)

RUNTIMES_DIR = Path(__file__).resolve().parent.parent / "runtimes"
LANG_DIR = layout.LANG  # the interpreter's prefix, as a sandbox sees it

SANDBOX_UID = 993  # an unprivileged uid owned by nothing on the host
SANDBOX_GID = 993
BLANK_MEMORY_MB = 128  # a blank's limit until claimed: Lambda's default, so most claims keep it
HANDOVER_TIMEOUT_S = 10.0  # a blank that has not sent its listener by then is broken
REFILL_DELAY_S = 0.05  # how long after a claim the pool starts building its replacement


@dataclass(frozen=True)
class Interpreter:
    executable: str  # the runtime's real Python executable
    prefix: str  # its installation prefix, mounted read-only at /var/lang


@dataclass(frozen=True)
class SandboxSpec:
    interpreter: Interpreter
    memory_mb: int
    tmp_mb: int
    task_dir: Path  # a directory directly under the manager's tasks root, mounted at /var/task
    env: dict[str, str]
    runtime_args: dict[str, Any] = field(default_factory=dict)  # passed through to the runtime
    opt_dir: Path | None = None  # like task_dir, mounted read-only at /opt (layers)


@dataclass
class Sandbox:
    id: str
    pid: int
    cgroup: Cgroup
    channel: socket.socket  # the platform's end of the instance socket
    log_fd: int  # read end of the sandbox's stdout/stderr pipe
    api_listener: socket.socket | None = None  # listening inside the sandbox's network namespace
    tmp_disk: TmpDisk | None = None  # its /tmp, when on disk
    destroyed: bool = False

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return not self.destroyed

    def destroy(self) -> None:
        """Kill every process of the sandbox and release its resources (idempotent)."""
        if self.destroyed:
            return
        self.destroyed = True
        with contextlib.suppress(OSError):
            self.cgroup.kill()
        with contextlib.suppress(OSError):
            self.cgroup.remove()
        with contextlib.suppress(OSError):
            self.channel.close()
        if self.api_listener is not None:
            with contextlib.suppress(OSError):
                self.api_listener.close()
        if self.tmp_disk is not None:
            self.tmp_disk.close()

    def discard_unclaimed(self) -> None:
        self.destroy()
        close_quietly(self.log_fd)


async def _discard_disk(making: Future[TmpDisk] | None) -> None:
    """Close the disk being made for a blank that failed, once it is made."""
    if making is None:
        return
    try:
        disk = await asyncio.wrap_future(making)
    except Exception:
        return
    disk.close()


class SandboxManager:
    def __init__(
        self,
        work_dir: Path,
        tasks_root: Path,
        extra_binds: tuple[tuple[str, str], ...] = (),
        pool_size: int = 2,
        pids_max: int = 1024,
        nofile: int = 1024,
        isolate_network: bool = True,
        api_port: int | None = None,
        driver: CgroupDriver | None = None,
        tmp_on_disk: bool = True,
        tmp_max_mb: int = 10240,
    ) -> None:
        self.work_dir = work_dir
        self.rootfs = work_dir / "rootfs"
        self.rootfs.mkdir(parents=True, exist_ok=True)
        self.tasks_root = tasks_root
        self.extra_binds = extra_binds
        self.pool_size = pool_size
        self.pids_max = pids_max
        self.nofile = nofile
        self.isolate_network = isolate_network
        self.api_port = api_port  # sandboxes get a listener for 127.0.0.1:<api_port> inside
        # One cgroup subtree per data directory: several servers can share a host.
        tag = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:12]
        self.driver = driver or detect(f"ember-{tag}")
        self.stale_cleaned = self.driver.cleanup_stale()
        self._owner_marker: Path | None = None
        if isinstance(self.driver, V1Driver | V2Driver):
            # Sandboxes left by servers that died (and never restarted on their data dir)
            # would live on, frozen, for good: reap them, and mark this subtree as ours.
            subtree = f"ember-{tag}"
            cgroup_owner.reap_orphans(self.driver.root, subtree, self.driver.version)
            self._owner_marker = cgroup_owner.mark(self.driver.root, subtree, self.driver.version)
        self.seccomp = build_programs()
        self.tmp_disks = self._tmp_disks(tmp_max_mb) if tmp_on_disk else None
        self._disk_maker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tmp-disk")
        # Set by the owner of the instances: destroy one idle instance to give back what it
        # holds (its /tmp's reservation); False when there is none.
        self.reclaim: Callable[[], bool] | None = None
        self.created = 0
        self._zygotes: dict[str, Zygote] = {}
        self._blanks: dict[Interpreter, list[Sandbox]] = {}
        self._refills: dict[Interpreter, asyncio.Task[None]] = {}

    def _tmp_disks(self, max_mb: int) -> TmpDisks | None:
        disks = TmpDisks(self.work_dir / "tmp", max_mb)
        try:
            disks.start()
        except (TmpDiskUnavailable, OSError) as exc:
            log.warning(
                "/tmp stays in memory (a tmpfs counted against each function's MemorySize), "
                "not on disk: %s",
                exc,
            )
            return None
        return disks

    def zygote(self, interpreter: Interpreter) -> Zygote:
        zygote = self._zygotes.get(interpreter.executable)
        if zygote is None:
            zygote = Zygote(
                interpreter.executable,
                interpreter.prefix,
                RUNTIMES_DIR / "python",
                "bootstrap",
                self.seccomp,
                self.work_dir / f"zygote-{Path(interpreter.executable).name}.log",
                self.rootfs,
                self._zygote_host_paths(),
            )
            self._zygotes[interpreter.executable] = zygote
        return zygote

    def _zygote_host_paths(self) -> list[tuple[str, bool]]:
        """The host's paths a zygote reaches (spawn requests name them): (path, writable)."""
        paths = [(str(self.driver.root), True), (str(self.tasks_root), False)]
        paths += [(source, False) for source, _ in self.extra_binds]
        return paths

    def blank_count(self) -> int:
        return sum(len(blanks) for blanks in self._blanks.values())

    async def prepare(self, interpreter: Interpreter) -> None:
        """Start the interpreter's zygote and fill its pool of blanks."""
        await asyncio.to_thread(self.zygote(interpreter).start)
        await self._refill(interpreter)

    async def acquire(self, spec: SandboxSpec) -> Sandbox:
        """A sandbox claimed for `spec`: a pooled blank when there is one, else a new one."""
        if spec.task_dir.parent != self.tasks_root:
            raise ValueError(f"{spec.task_dir} is not a package under {self.tasks_root}")
        if spec.opt_dir is not None and spec.opt_dir.parent != self.tasks_root:
            raise ValueError(f"{spec.opt_dir} is not a directory under {self.tasks_root}")
        reserved = self._reserve_tmp(spec.tmp_mb)  # before taking a blank: it may be refused
        blanks = self._blanks.setdefault(spec.interpreter, [])
        sandbox = None
        while blanks:
            candidate = blanks.pop()
            if candidate.alive():
                sandbox = candidate
                break
            candidate.discard_unclaimed()
        self._refill_soon(spec.interpreter)
        try:
            if sandbox is None:
                sandbox = await self._build(spec.interpreter, prefault=False)  # the claim is next
        except BaseException:
            if self.tmp_disks is not None:
                self.tmp_disks.unreserve(reserved)
            raise
        try:
            disk = sandbox.tmp_disk
            if self.tmp_disks is not None:
                if disk is None:
                    self.tmp_disks.unreserve(reserved)
                else:
                    self.tmp_disks.hold(disk, reserved)
                    disk.cap(spec.tmp_mb)
            sandbox.cgroup.configure(spec.memory_mb)
            claim = orjson.dumps(
                {
                    "task_dir": spec.task_dir.name,
                    "opt_dir": spec.opt_dir.name if spec.opt_dir is not None else None,
                    "tmp_mb": None if disk is not None else spec.tmp_mb,
                    "env": spec.env,
                    "runtime": spec.runtime_args,
                }
            )
            sandbox.channel.sendall(struct.pack("!II", len(claim), 0) + claim)
        except BaseException:
            sandbox.discard_unclaimed()
            raise
        return sandbox

    def _reserve_tmp(self, mb: int) -> int:
        """Reserve the claim's /tmp on the host's disk, destroying idle instances (through
        `reclaim`) while it does not fit; TmpDiskFull when it cannot."""
        if self.tmp_disks is None:
            return 0
        while True:
            try:
                return self.tmp_disks.reserve(mb)
            except TmpDiskFull:
                if self.reclaim is None or not self.reclaim():
                    raise

    def _refill_soon(self, interpreter: Interpreter) -> None:
        task = self._refills.get(interpreter)
        if self.pool_size > 0 and (task is None or task.done()):
            self._refills[interpreter] = asyncio.get_running_loop().create_task(
                self._refill(interpreter, delay=REFILL_DELAY_S)
            )

    async def _refill(self, interpreter: Interpreter, delay: float = 0.0) -> None:
        if delay:
            # Let the sandbox just claimed initialise first: building a blank (fork, mounts)
            # competes with it for the same two cores.
            await asyncio.sleep(delay)
        blanks = self._blanks.setdefault(interpreter, [])
        while len(blanks) < self.pool_size:
            try:
                blank = await self._build(interpreter)
            except Exception:
                log.exception("building a blank sandbox for %s failed", interpreter.executable)
                return
            blanks.append(blank)

    async def _build(self, interpreter: Interpreter, prefault: bool = True) -> Sandbox:
        """A new blank sandbox: cgroup, then the zygote forks and jails it. A pooled blank
        (`prefault`) then copies the memory it shares with the zygote while it waits (see
        zygote/prefault.py); one built for a claim already waiting skips that. Its /tmp disk,
        if on disk, is made meanwhile (the blank waits for it before it hands over)."""
        sandbox_id = uuid.uuid4().hex[:16]
        making = (
            self._disk_maker.submit(self.tmp_disks.create) if self.tmp_disks is not None else None
        )
        try:
            cgroup = await asyncio.to_thread(
                self.driver.create, sandbox_id, BLANK_MEMORY_MB, self.pids_max
            )
        except BaseException:
            await _discard_disk(making)
            raise
        platform_end, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        request = {
            "cgroup_procs": cgroup.procs_files(),
            "views": [list(b) for b in self.extra_binds],
            "tasks_root": str(self.tasks_root),
            "tmp_disk": making is not None,
            "tmp_mb": 1,  # a tmpfs (when not on disk), sized by the claim
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
            "nofile": self.nofile,
            "isolate_network": self.isolate_network,
            "api_port": self.api_port,
            "prefault": prefault,
        }
        try:
            pid, listener, disk = await asyncio.to_thread(
                self._spawn, interpreter, request, platform_end, sandbox_end.fileno(), log_w, making
            )
        except BaseException:
            platform_end.close()
            close_quietly(log_r)
            with contextlib.suppress(OSError):
                cgroup.kill()
                cgroup.remove()
            await _discard_disk(making)
            raise
        finally:
            sandbox_end.close()
            close_quietly(log_w)
        self.created += 1
        return Sandbox(sandbox_id, pid, cgroup, platform_end, log_r, listener, disk)

    def _spawn(
        self,
        interpreter: Interpreter,
        request: dict[str, Any],
        platform_end: socket.socket,
        sandbox_fd: int,
        log_w: int,
        making: Future[TmpDisk] | None,
    ) -> tuple[int, socket.socket | None, TmpDisk | None]:
        """Fork a blank (blocking; run in a thread), send it its /tmp disk if it has one, and
        take the first thing it sends: its API listener, or word that it has none."""
        pid = self.zygote(interpreter).spawn(request, sandbox_fd, log_w)
        disk = None
        if making is not None:
            disk = making.result()
            assert disk.mount is not None
            socket.send_fds(platform_end, [b"D"], [disk.mount])
            disk.handed_over()
        platform_end.settimeout(HANDOVER_TIMEOUT_S)
        try:
            message, fds, _, _ = socket.recv_fds(platform_end, 1, 1)
        finally:
            platform_end.settimeout(None)
        if message not in (b"L", b"-") or (message == b"L") != bool(fds):
            for fd in fds:
                close_quietly(fd)
            raise OSError(f"blank sandbox {pid} did not hand over its API listener")
        listener = socket.socket(fileno=fds[0]) if fds else None
        return pid, listener, disk

    async def stop(self) -> None:
        for task in self._refills.values():
            task.cancel()
        for blanks in self._blanks.values():
            for blank in blanks:
                blank.discard_unclaimed()
        self._blanks.clear()
        for zygote in self._zygotes.values():
            zygote.stop()
        self._zygotes.clear()
        self._disk_maker.shutdown(wait=True)
        if self.tmp_disks is not None:
            self.tmp_disks.stop()
        if self._owner_marker is not None:
            with contextlib.suppress(OSError):
                self._owner_marker.rmdir()
        with contextlib.suppress(OSError):
            self.driver.close()
