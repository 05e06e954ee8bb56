"""Sandboxes: create one (cgroup + zygote fork + jail), and destroy it. Mechanism only.

This module knows interpreters, limits, binds and environment variables, never functions.
A sandbox that hit any error is destroyed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.sandbox.cgroups import Cgroup, CgroupDriver, detect
from ember.sandbox.seccomp import build_bpf
from ember.sandbox.zygote_client import Zygote, close_quietly

RUNTIMES_DIR = Path(__file__).resolve().parent.parent / "runtimes"

SANDBOX_UID = 993  # an unprivileged uid owned by nothing on the host
SANDBOX_GID = 993


@dataclass(frozen=True)
class SandboxSpec:
    interpreter: str  # the runtime's real Python executable
    prefix: str  # its installation prefix, bound read-only at the same path
    memory_mb: int
    tmp_mb: int
    binds: tuple[tuple[str, str], ...]  # (host path, sandbox path), read-only
    env: dict[str, str]
    runtime_args: dict[str, Any] = field(default_factory=dict)  # passed through to the runtime
    isolate_network: bool = True


@dataclass
class Sandbox:
    id: str
    pid: int
    cgroup: Cgroup
    channel: socket.socket  # the platform's end of the instance socket
    log_fd: int  # read end of the sandbox's stdout/stderr pipe
    destroyed: bool = False

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


class SandboxManager:
    def __init__(
        self,
        work_dir: Path,
        pids_max: int = 1024,
        nofile: int = 1024,
        driver: CgroupDriver | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.rootfs = work_dir / "rootfs"
        self.rootfs.mkdir(parents=True, exist_ok=True)
        self.pids_max = pids_max
        self.nofile = nofile
        self.driver = driver or detect()
        self.stale_cleaned = self.driver.cleanup_stale()
        self.seccomp_bpf = build_bpf()
        self._zygotes: dict[str, Zygote] = {}

    def zygote(self, interpreter: str) -> Zygote:
        zygote = self._zygotes.get(interpreter)
        if zygote is None:
            zygote = Zygote(
                interpreter,
                RUNTIMES_DIR / "python",
                "bootstrap",
                self.seccomp_bpf,
                self.work_dir / f"zygote-{Path(interpreter).name}.log",
            )
            self._zygotes[interpreter] = zygote
        return zygote

    def prestart(self, interpreter: str) -> None:
        """Start a runtime's zygote ahead of the first cold start (blocking; run in a thread)."""
        zygote = self.zygote(interpreter)
        if not zygote.alive:
            zygote.start()

    async def create(self, spec: SandboxSpec) -> Sandbox:
        sandbox_id = uuid.uuid4().hex[:16]
        cgroup = await asyncio.to_thread(self.driver.create, sandbox_id, spec.memory_mb, self.pids_max)
        platform_end, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        request = {
            "cgroup_procs": cgroup.procs_files(),
            "root": str(self.rootfs),
            "binds": [[spec.prefix, spec.prefix], *[list(b) for b in spec.binds]],
            "tmp_mb": spec.tmp_mb,
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
            "nofile": self.nofile,
            "env": spec.env,
            "runtime": spec.runtime_args,
            "isolate_network": spec.isolate_network,
        }
        try:
            pid = await asyncio.to_thread(
                self.zygote(spec.interpreter).spawn, request, sandbox_end.fileno(), log_w
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
        return Sandbox(sandbox_id, pid, cgroup, platform_end, log_r)

    def stop(self) -> None:
        for zygote in self._zygotes.values():
            zygote.stop()
        self._zygotes.clear()
