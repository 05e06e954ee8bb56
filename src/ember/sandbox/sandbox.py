"""Sandboxes: build blank ones ahead of demand, claim one for a function, destroy it.

Mechanism only: this module knows interpreters, limits, binds and environment variables, never
functions. A blank sandbox already has its cgroup, namespaces, private root, /proc and network;
claiming it sends one frame (code directory, /tmp size, environment, runtime arguments) and
the sandbox attaches the code, drops its privileges and starts the runtime. A pool of blanks
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ember.sandbox.cgroups import Cgroup, CgroupDriver, detect
from ember.sandbox.seccomp import build_programs
from ember.sandbox.zygote_client import Zygote, close_quietly

log = logging.getLogger(__name__)

RUNTIMES_DIR = Path(__file__).resolve().parent.parent / "runtimes"

SANDBOX_UID = 993  # an unprivileged uid owned by nothing on the host
SANDBOX_GID = 993
BLANK_MEMORY_MB = 128  # a blank's limit until claimed: Lambda's default, so most claims keep it
HANDOVER_TIMEOUT_S = 10.0  # a blank that has not sent its listener by then is broken
REFILL_DELAY_S = 0.05  # how long after a claim the pool starts building its replacement


@dataclass(frozen=True)
class Interpreter:
    executable: str  # the runtime's real Python executable
    prefix: str  # its installation prefix, bound read-only at the same path


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

    def discard_unclaimed(self) -> None:
        self.destroy()
        close_quietly(self.log_fd)


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
        self.seccomp = build_programs()
        self.created = 0
        self._zygotes: dict[str, Zygote] = {}
        self._blanks: dict[Interpreter, list[Sandbox]] = {}
        self._refills: dict[Interpreter, asyncio.Task[None]] = {}

    def zygote(self, interpreter: Interpreter) -> Zygote:
        zygote = self._zygotes.get(interpreter.executable)
        if zygote is None:
            zygote = Zygote(
                interpreter.executable,
                RUNTIMES_DIR / "python",
                "bootstrap",
                self.seccomp,
                self.work_dir / f"zygote-{Path(interpreter.executable).name}.log",
            )
            self._zygotes[interpreter.executable] = zygote
        return zygote

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
        blanks = self._blanks.setdefault(spec.interpreter, [])
        sandbox = None
        while blanks:
            candidate = blanks.pop()
            if candidate.alive():
                sandbox = candidate
                break
            candidate.discard_unclaimed()
        self._refill_soon(spec.interpreter)
        if sandbox is None:
            sandbox = await self._build(spec.interpreter, prefault=False)  # the claim is next
        try:
            sandbox.cgroup.configure(spec.memory_mb)
            claim = orjson.dumps(
                {
                    "task_dir": spec.task_dir.name,
                    "opt_dir": spec.opt_dir.name if spec.opt_dir is not None else None,
                    "tmp_mb": spec.tmp_mb,
                    "env": spec.env,
                    "runtime": spec.runtime_args,
                }
            )
            sandbox.channel.sendall(struct.pack("!II", len(claim), 0) + claim)
        except BaseException:
            sandbox.discard_unclaimed()
            raise
        return sandbox

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
        zygote/prefault.py); one built for a claim already waiting skips that."""
        sandbox_id = uuid.uuid4().hex[:16]
        cgroup = await asyncio.to_thread(self.driver.create, sandbox_id, BLANK_MEMORY_MB, self.pids_max)
        platform_end, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        request = {
            "cgroup_procs": cgroup.procs_files(),
            "root": str(self.rootfs),
            "binds": [[interpreter.prefix, interpreter.prefix], *[list(b) for b in self.extra_binds]],
            "tasks_root": str(self.tasks_root),
            "tmp_mb": 1,
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
            "nofile": self.nofile,
            "isolate_network": self.isolate_network,
            "api_port": self.api_port,
            "prefault": prefault,
        }
        try:
            pid, listener = await asyncio.to_thread(
                self._spawn, interpreter, request, platform_end, sandbox_end.fileno(), log_w
            )
        except BaseException:
            platform_end.close()
            close_quietly(log_r)
            with contextlib.suppress(OSError):
                cgroup.kill()
                cgroup.remove()
            raise
        finally:
            sandbox_end.close()
            close_quietly(log_w)
        self.created += 1
        return Sandbox(sandbox_id, pid, cgroup, platform_end, log_r, listener)

    def _spawn(
        self,
        interpreter: Interpreter,
        request: dict[str, Any],
        platform_end: socket.socket,
        sandbox_fd: int,
        log_w: int,
    ) -> tuple[int, socket.socket | None]:
        """Fork a blank (blocking; run in a thread) and take the first thing it sends: its API
        listener, or word that it has none."""
        pid = self.zygote(interpreter).spawn(request, sandbox_fd, log_w)
        platform_end.settimeout(HANDOVER_TIMEOUT_S)
        try:
            message, fds, _, _ = socket.recv_fds(platform_end, 1, 1)
        finally:
            platform_end.settimeout(None)
        if message not in (b"L", b"-") or (message == b"L") != bool(fds):
            for fd in fds:
                close_quietly(fd)
            raise OSError(f"blank sandbox {pid} did not hand over its API listener")
        return pid, socket.socket(fileno=fds[0]) if fds else None

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
        with contextlib.suppress(OSError):
            self.driver.close()
