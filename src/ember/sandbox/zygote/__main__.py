"""A zygote: a small, single-threaded, secret-free process that forks sandboxes.

Started by the platform as `<runtime python> -I <this dir> <control fd> <layout JSON>`, it
first moves into a root of its own and re-executes itself there as `/var/lang/bin/pythonX.Y -I
/var/rapid <control fd>` (zygote_root.py; layout.py says why). It then pre-imports the
language runtime so each sandbox starts with it loaded, then serves spawn requests arriving as
JSON messages (plus two file descriptors: the instance's socket and its log pipe) on a
SOCK_SEQPACKET socket. Paths in a request are the host's; the zygote finds them under /.host.
A sandbox whose /tmp is on disk receives the disk's file system, mounted detached, on its
instance socket, from the platform, which makes it while the zygote forks. A spawned sandbox is blank: it waits on its instance socket for a claim
(the function's code directory, its layers directory if any, /tmp size, environment and
runtime arguments) before it drops privileges and starts the runtime, so blanks can be built ahead of demand. Replies are `{"ok": true, "pid": N}` or `{"ok": false, "error": "..."}`.
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol, cast

ZYGOTE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ZYGOTE_DIR)

if TYPE_CHECKING:
    from ember.sandbox.zygote import jail, layout, prefault, zygote_root
else:
    import jail
    import layout
    import prefault
    import zygote_root

MAX_MESSAGE = 256 * 1024
SANDBOX_ARGV = ["/var/runtime/bootstrap.py"]  # what a function sees in sys.argv (as on AWS)


class Runtime(Protocol):
    """A language runtime module (e.g. runtimes/python/bootstrap.py)."""

    def preload(self) -> None: ...

    def main(self, fd: int, spec: dict[str, Any]) -> None: ...


class Filters(NamedTuple):
    """The two seccomp stages (see ember/sandbox/seccomp.py): loaded blank, added when claimed."""

    blank: bytes
    claimed: bytes


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_claim(fd: int) -> dict[str, Any]:
    """The claim frame (`!II` lengths, JSON header, no body), read without over-reading."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise EOFError("the platform closed the sandbox before claiming it")
            data += chunk
        return data

    header_len, body_len = struct.unpack("!II", exactly(8))
    claim: dict[str, Any] = json.loads(exactly(header_len))
    if body_len:
        exactly(body_len)
    return claim


def _claim_waiting(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _receive_disk(instance_fd: int) -> int:
    """/tmp's file system, mounted detached by the platform (a `D` and the mount descriptor)."""
    channel = socket.socket(fileno=instance_fd)
    try:
        message, fds, _, _ = socket.recv_fds(channel, 1, 1)
    finally:
        channel.detach()
    if message == b"D" and len(fds) == 1:
        return fds[0]
    for fd in fds:
        os.close(fd)
    raise EOFError("the platform sent no /tmp disk")


def _hand_over(instance_fd: int, listener: socket.socket | None) -> None:
    """Send the API listener (or nothing) to the platform: the first message of every blank."""
    channel = socket.socket(fileno=instance_fd)
    try:
        fds = [listener.fileno()] if listener is not None else []
        socket.send_fds(channel, [b"L" if fds else b"-"], fds)
    finally:
        channel.detach()
        if listener is not None:
            listener.close()


def _run_inner(
    spec: dict[str, Any],
    filters: Filters,
    runtime: Runtime,
    runtime_dir: str,
    instance_fd: int,
    log_fd: int,
) -> NoReturn:
    """PID 1 of the sandbox: wait blank until claimed, finish the jail, run the runtime."""
    try:
        listener = jail.ready_blank(spec)
        if spec.get("tmp_disk"):
            jail.attach_tmp_disk(_receive_disk(instance_fd))
        jail.load_seccomp(filters.blank)
        _hand_over(instance_fd, listener)
        if spec.get("prefault", True):
            prefault.populate_shared_pages(lambda: _claim_waiting(instance_fd))
        claim = _read_claim(instance_fd)
        claimed_at = time.monotonic()  # CLOCK_MONOTONIC is host-wide: the platform compares
        jail.claim(claim["task_dir"], claim["tmp_mb"], claim.get("opt_dir"))
        # The log pipe was made by root with mode 0600: hand it to the sandbox's user, so that
        # re-opening it (/dev/stdout, /proc/self/fd/1) works as it does on Lambda.
        os.fchown(log_fd, spec["uid"], spec["gid"])
        jail.finish(spec, filters.claimed)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        keep = sorted({0, 1, 2, instance_fd})
        start = 3
        for fd in [*keep[3:], 65536]:
            if fd > start:
                os.closerange(start, fd)
            start = fd + 1
        os.environ.clear()
        os.environ.update(claim["env"])
        os.chdir("/var/task")
        # The zygote's own paths mean nothing inside the sandbox (they are not even mounted).
        sys.path[:] = [p for p in sys.path if p not in (ZYGOTE_DIR, runtime_dir)]
        sys.argv[:] = SANDBOX_ARGV
        claim["runtime"]["timings"] = {"claimed": claimed_at, "jailed": time.monotonic()}
    except EOFError:  # a blank discarded unclaimed (pool shrinking, server stopping)
        os._exit(0)
    except BaseException:
        try:
            os.write(2, ("ember sandbox setup failed:\n" + traceback.format_exc()).encode())
        finally:
            os._exit(1)
    os._exit(_run_runtime(runtime, instance_fd, claim["runtime"]))


def _run_runtime(runtime: Runtime, instance_fd: int, runtime_args: dict[str, Any]) -> int:
    """Run the language runtime; its exit status (sys.exit in a handler ends the sandbox)."""
    status = 0
    try:
        runtime.main(instance_fd, runtime_args)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            with contextlib.suppress(Exception):
                print(exc.code, file=sys.stderr)
            status = 1
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return status


def _localize(spec: dict[str, Any]) -> None:
    """A spawn request's host paths, as this zygote reaches them (under /.host)."""
    spec["root"] = layout.SANDBOX_ROOT
    spec["cgroup_procs"] = [layout.HOST + path for path in spec["cgroup_procs"]]
    spec["tasks_root"] = layout.HOST + spec["tasks_root"]
    spec["views"] = [[layout.HOST + source, target] for source, target in spec["views"]]


def _spawn(
    spec: dict[str, Any],
    fds: list[int],
    filters: Filters,
    runtime: Runtime,
    runtime_dir: str,
    control: socket.socket,
) -> dict[str, Any]:
    instance_fd, log_fd = fds
    _localize(spec)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            os.close(status_r)
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            jail.join_cgroups(spec["cgroup_procs"])
            jail.build_root(spec)
            inner = os.fork()
            if inner == 0:
                os.close(status_w)
                _run_inner(spec, filters, runtime, runtime_dir, instance_fd, log_fd)
            os.write(status_w, ("ok %d" % inner).encode())
            os._exit(0)
        except BaseException as exc:
            try:
                os.write(status_w, ("err %s" % exc).encode()[:4000])
            finally:
                os._exit(1)
    os.close(status_w)
    for fd in fds:
        os.close(fd)
    chunks = []
    while True:
        chunk = os.read(status_r, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(status_r)
    os.waitpid(pid, 0)
    status = b"".join(chunks).decode(errors="replace")
    if status.startswith("ok "):
        return {"ok": True, "pid": int(status[3:])}
    return {"ok": False, "error": status[4:] or "sandbox setup failed"}


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)
    jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)  # sandboxes' PID 1s are re-parented to us
    config: dict[str, Any] = json.loads(control.recv(MAX_MESSAGE))
    filters = Filters(
        bytes.fromhex(config["seccomp_blank"]), bytes.fromhex(config["seccomp_claimed"])
    )
    runtime_dir = layout.RUNTIME
    sys.path.insert(0, runtime_dir)
    runtime = cast(Runtime, __import__(config["runtime_module"]))
    runtime.preload()
    control.send(json.dumps({"ok": True, "pid": os.getpid()}).encode())
    while True:
        ready, _, _ = select.select([control], [], [], 1.0)
        _reap()
        if not ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
        if not message:
            return
        try:
            spec = json.loads(message)
            if len(fds) != 2:
                raise ValueError("a spawn request carries exactly two descriptors")
            reply = _spawn(spec, fds, filters, runtime, runtime_dir, control)
        except Exception as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            reply = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        control.send(json.dumps(reply).encode())


def start() -> None:
    if len(sys.argv) > 2:  # stage 1: as the platform started it, with host paths
        try:
            zygote_root.enter(json.loads(sys.argv[2]), int(sys.argv[1]))
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    main()


if __name__ == "__main__":
    start()
