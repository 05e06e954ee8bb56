"""The platform's handle on one zygote process (one per runtime interpreter)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from ember.sandbox.seccomp import SeccompPrograms

ZYGOTE_DIR = Path(__file__).parent / "zygote"
MAX_MESSAGE = 256 * 1024
SPAWN_TIMEOUT_S = 30.0  # a zygote that does not answer a spawn in this long is restarted


class ZygoteError(Exception):
    pass


class Zygote:
    """Starts `<interpreter> -I sandbox/zygote <fd> <layout>` and sends it spawn requests.

    The zygote moves into a root of its own (zygote/layout.py), mounted on `root_dir` (an empty
    directory) in its own mount namespace, where the interpreter's `prefix` is /var/lang,
    `runtime_dir` is /var/runtime and each of `host_paths` (path, writable) is under /.host.

    Spawning is a blocking exchange (fork + jail setup, about a millisecond or two), serialized
    by a lock; callers run it in a thread.
    """

    def __init__(
        self,
        interpreter: str,
        prefix: str,
        runtime_dir: Path,
        runtime_module: str,
        seccomp: SeccompPrograms,
        log_path: Path,
        root_dir: Path,
        host_paths: list[tuple[str, bool]],
    ) -> None:
        self.interpreter = interpreter
        self.prefix = prefix
        self.root_dir = root_dir
        self.host_paths = host_paths
        self.runtime_dir = runtime_dir
        self.runtime_module = runtime_module
        self.seccomp = seccomp
        self.log_path = log_path
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def start(self) -> None:
        """Start the zygote unless it is running (thread-safe)."""
        with self._lock:
            if not self.alive:
                self._start()

    def _start(self) -> None:
        self._stop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        layout = {
            "root": str(self.root_dir),
            "prefix": self.prefix,
            "executable": self.interpreter,
            "runtime_dir": str(self.runtime_dir),
            "zygote_dir": str(ZYGOTE_DIR),
            "host_paths": self.host_paths,
        }
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.interpreter, "-I", str(ZYGOTE_DIR), str(child.fileno()), json.dumps(layout)],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        child.close()
        self._control = parent
        config = {
            "seccomp_blank": self.seccomp.blank.hex(),
            "seccomp_claimed": self.seccomp.claimed.hex(),
            "runtime_module": self.runtime_module,
        }
        parent.settimeout(60)
        parent.send(json.dumps(config).encode())
        reply = self._receive()
        if not reply.get("ok"):
            raise ZygoteError(f"zygote for {self.interpreter} failed to start: {reply}")
        parent.settimeout(SPAWN_TIMEOUT_S)

    def _receive(self) -> dict[str, Any]:
        assert self._control is not None
        data = self._control.recv(MAX_MESSAGE)
        if not data:
            raise ZygoteError(f"zygote for {self.interpreter} exited; see {self.log_path}")
        result: dict[str, Any] = json.loads(data)
        return result

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def spawn(self, spec: dict[str, Any], instance_fd: int, log_fd: int) -> int:
        """Fork a sandbox; returns the host pid of its PID 1. The fds are sent, not consumed."""
        with self._lock:
            if not self.alive:
                self._start()
            assert self._control is not None
            try:
                socket.send_fds(self._control, [json.dumps(spec).encode()], [instance_fd, log_fd])
                reply = self._receive()
            except (OSError, ValueError, ZygoteError):
                # The request/reply exchange is out of step or the zygote is gone: start afresh.
                self._stop()
                raise
        if not reply.get("ok"):
            raise ZygoteError(f"sandbox setup failed: {reply.get('error')}")
        return int(reply["pid"])

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def close_quietly(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
