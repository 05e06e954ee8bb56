"""A zygote: a small, single-threaded, secret-free process that forks sandboxes.

Started by the platform as `<runtime python> -I <this dir> <control fd>`. It pre-imports the
language runtime so each sandbox starts with it loaded, then serves spawn requests arriving as
JSON messages (plus two file descriptors: the instance's socket and its log pipe) on a
SOCK_SEQPACKET socket. A spawned sandbox is blank: it waits on its instance socket for a claim
(the function's code directory, /tmp size, environment and runtime arguments) before it drops
privileges and starts the runtime, so blanks can be built ahead of demand. Replies are `{"ok": true, "pid": N}` or `{"ok": false, "error": "..."}`.
Standard library only.
"""

import json
import os
import select
import signal
import socket
import struct
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

import jail  # type: ignore[import-not-found]

MAX_MESSAGE = 256 * 1024


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_claim(fd):
    """The claim frame (`!II` lengths, JSON header, no body), read without over-reading."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise EOFError("the platform closed the sandbox before claiming it")
            data += chunk
        return data

    header_len, body_len = struct.unpack("!II", exactly(8))
    claim = json.loads(exactly(header_len))
    if body_len:
        exactly(body_len)
    return claim


def _run_inner(spec, seccomp_bpf, runtime, instance_fd, log_fd):
    """PID 1 of the sandbox: wait blank until claimed, finish the jail, run the runtime."""
    try:
        jail.ready_blank(spec)
        claim = _read_claim(instance_fd)
        jail.claim(claim["task_dir"], claim["tmp_mb"])
        jail.finish(spec, seccomp_bpf)
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
        runtime.main(instance_fd, claim["runtime"])
    except BaseException:
        try:
            os.write(2, ("ember sandbox setup failed:\n" + traceback.format_exc()).encode())
        finally:
            os._exit(1)
    os._exit(0)


def _spawn(spec, fds, seccomp_bpf, runtime, control):
    instance_fd, log_fd = fds
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
                _run_inner(spec, seccomp_bpf, runtime, instance_fd, log_fd)
            os.write(status_w, ("ok %d" % inner).encode())
            os._exit(0)
        except BaseException as exc:
            try:
                os.write(status_w, ("err %s" % exc).encode()[:4000])
            finally:
                os._exit(1)
    os.close(status_w)
    os.close(instance_fd)
    os.close(log_fd)
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


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)
    jail.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: sandboxes' PID 1s are re-parented to us
    config = json.loads(control.recv(MAX_MESSAGE))
    seccomp_bpf = bytes.fromhex(config.get("seccomp", ""))
    sys.path.insert(0, config["runtime_path"])
    runtime = __import__(config["runtime_module"])
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
            reply = _spawn(spec, fds, seccomp_bpf, runtime, control)
        except Exception as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            reply = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        control.send(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
