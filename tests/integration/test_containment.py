"""Hostile functions, for real, as root: each is contained with a clear error for its caller,
and afterwards the platform and every other function keep working.

Limits under test (docs/behavior.md): cgroup memory = MemorySize, pids.max 1024, RLIMIT_NOFILE
1024, /tmp a disk of EphemeralStorage MB (not memory), a non-root uid, no_new_privs + seccomp,
private mount/PID/IPC/UTS/network namespaces with a read-only root, no host path in sight.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ember
from conftest import LiveServer
from ember.runtime_catalog import discover
from invoking import Invoked, deploy, invoke, ok

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root")

NORMAL = "def handler(event, context):\n    return 'still here'\n"


@pytest.fixture(scope="module")
def bystander(server: LiveServer) -> str:
    """A well-behaved function, warm before the hostile ones run."""
    lam = server.client("lambda")
    name = deploy(lam, NORMAL, "bystander")
    assert ok(lam, name) == "still here"
    return name


@pytest.fixture(autouse=True)
def platform_keeps_working(lam: Any, bystander: str) -> Iterator[None]:
    """After every hostile test, a normal function (warm since before it) still answers."""
    yield
    result = invoke(lam, bystander)
    assert result.function_error is None
    assert result.payload == "still here"
    assert not result.cold, "the hostile function disturbed another function's instance"


def run(lam: Any, code: str, event: Any = None, **config: Any) -> tuple[str, Invoked]:
    """Deploy `code` as a new function and invoke it once: (its name, the result)."""
    name = deploy(lam, code, "hostile", **config)
    return name, invoke(lam, name, event)


# -- resource exhaustion -----------------------------------------------------------------------


def test_a_memory_hog_is_killed_with_out_of_memory(lam: Any) -> None:
    code = """
def handler(event, context):
    if not event.get("attack"):
        return "recovered"
    hoard = []
    for _ in range(400):
        hoard.append(b"\\x01" * (1 << 20))  # touched, not just reserved
    return len(hoard)
"""
    name, result = run(lam, code, {"attack": True}, MemorySize=128)
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.OutOfMemory"
    report = result.report
    assert report["status"] == "error"
    assert report["error_type"] == "Runtime.OutOfMemory"
    assert int(report["used"]) >= 120  # the real peak, up to the limit
    after = invoke(lam, name)  # the same function, in a new instance
    assert after.payload == "recovered"
    assert after.cold


def test_a_fork_bomb_is_contained(lam: Any) -> None:
    code = """
import os

def handler(event, context):
    if not event.get("attack"):
        return "recovered"
    while True:
        try:
            os.fork()  # parent and every child keep forking
        except OSError:
            pass
"""
    name, result = run(lam, code, {"attack": True}, Timeout=2)
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] in ("Sandbox.Timedout", "Runtime.OutOfMemory")
    assert ok(lam, name) == "recovered"


def test_forking_stops_at_the_pids_limit(lam: Any) -> None:
    code = """
import os

def handler(event, context):
    children = 0
    error = None
    while children < 5000:
        try:
            pid = os.fork()
        except OSError as exc:
            error = exc.errno
            break
        if pid == 0:
            os._exit(0)  # exits at once; stays a zombie (holding its pid) until reaped
        children += 1
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    return {"children": children, "errno": error}
"""
    # 2048 MB buys more than a full core (forking a thousand Pythons is CPU work).
    _, result = run(lam, code, MemorySize=2048, Timeout=30)
    assert result.function_error is None, result.payload
    assert result.payload["errno"] == errno.EAGAIN
    assert 900 < result.payload["children"] < 1024


def test_threads_stop_at_the_pids_limit(lam: Any) -> None:
    code = """
import threading

def handler(event, context):
    stop = threading.Event()
    threads = []
    error = None
    while len(threads) < 5000:
        t = threading.Thread(target=stop.wait)
        try:
            t.start()
        except RuntimeError as exc:
            error = str(exc)
            break
        threads.append(t)
    stop.set()
    for t in threads:
        t.join()
    return {"threads": len(threads), "error": error}
"""
    _, result = run(lam, code, MemorySize=1024, Timeout=30)
    assert result.function_error is None, result.payload
    assert result.payload["error"] == "can't start new thread"
    assert 900 < result.payload["threads"] < 1024


def test_opening_5000_files_stops_at_1024_descriptors(lam: Any) -> None:
    code = """
import os
import socket
import urllib.parse
import urllib.request

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]


def handler(event, context):
    if event.get("health"):
        with urllib.request.urlopen(ENDPOINT + "/health", timeout=5) as response:
            return response.status
    fds = []
    error = None
    try:
        for _ in range(5000):
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        error = exc.errno
    opened = len(fds)
    # With every descriptor taken, knock on Ember's door: the runtime's relay to Ember cannot
    # accept the connection now, and must still be serving once descriptors are free again.
    os.close(fds.pop())
    knock = socket.socket()
    knock.settimeout(0.5)
    try:
        knock.connect(("127.0.0.1", urllib.parse.urlsplit(ENDPOINT).port))
        knock.sendall(b"GET /health HTTP/1.0\\r\\n\\r\\n")
        knock.recv(16)
    except OSError:
        pass
    finally:
        knock.close()
        for fd in fds:
            os.close(fd)
    return {"opened": opened, "errno": error}
"""
    name, result = run(lam, code)
    assert result.function_error is None, result.payload
    assert result.payload["errno"] == errno.EMFILE
    assert 1000 < result.payload["opened"] < 1024
    assert ok(lam, name, {"health": True}) == 200  # the same instance still reaches Ember


TMP_FILLER = """
import os

def free_mb():
    st = os.statvfs("/tmp")
    return st.f_bavail * st.f_frsize >> 20

def handler(event, context):
    before = free_mb()
    if event.get("look"):
        return {"free_mb": before, "files": os.listdir("/tmp")}
    written = 0
    chunk = b"\\1" * (4 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while written < event.get("stop_mb", 16384):
                f.write(chunk)
                f.flush()
                written += 4
    except OSError as exc:
        return {"mb": written, "errno": exc.errno, "free_mb": before}
    finally:
        os.unlink("/tmp/fill")
    return {"mb": written, "errno": None, "free_mb": before}
"""


def test_a_128_mb_function_fills_its_512_mb_tmp_and_gets_enospc_not_oom(lam: Any) -> None:
    # /tmp is a disk of its own, as on Lambda: what a function writes there is not memory.
    name, result = run(lam, TMP_FILLER, MemorySize=128, EphemeralStorage={"Size": 512}, Timeout=120)
    assert result.function_error is None, result.payload
    assert result.report["error_type"] is None
    assert result.payload["free_mb"] == 512
    assert result.payload["errno"] == errno.ENOSPC
    assert 500 <= result.payload["mb"] <= 512
    again = invoke(lam, name, {"look": True})  # the same instance: the space came back
    assert not again.cold
    assert again.payload == {"free_mb": 512, "files": []}


def test_a_larger_ephemeral_storage_gives_more_room(lam: Any) -> None:
    event = {"stop_mb": 640}  # more than the default 512 MB would hold
    _, result = run(
        lam, TMP_FILLER, event, MemorySize=1024, EphemeralStorage={"Size": 1024}, Timeout=120
    )
    assert result.payload == {"mb": 640, "errno": None, "free_mb": 1024}


def test_tmp_is_empty_in_every_new_instance(lam: Any) -> None:
    code = """
import os

def handler(event, context):
    found = sorted(os.listdir("/tmp"))
    with open("/tmp/left-behind", "w") as f:
        f.write("x")
    return found
"""
    name, first = run(lam, code)
    assert first.payload == []
    assert ok(lam, name) == ["left-behind"]  # a warm instance keeps its /tmp, as on Lambda
    lam.update_function_configuration(FunctionName=name, Description="a new instance, please")
    fresh = invoke(lam, name)
    assert fresh.cold
    assert fresh.payload == []


def test_an_infinite_loop_times_out(lam: Any) -> None:
    code = "def handler(event, context):\n    while event.get('attack'):\n        pass\n    return 'recovered'\n"
    name, result = run(lam, code, {"attack": True}, Timeout=1)
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert result.report["status"] == "timeout"
    assert ok(lam, name) == "recovered"


# -- what a function can see -------------------------------------------------------------------

PROBE = """
import os

def attempt(action):
    try:
        return {"ok": action()}
    except OSError as exc:
        return {"error": type(exc).__name__, "errno": exc.errno}

def handler(event, context):
    return {key: attempt(lambda path=path: open(path, "rb").read().decode(errors="replace"))
            for key, path in event["read"].items()} | {
            key: attempt(lambda path=path: sorted(os.listdir(path)))
            for key, path in event["list"].items()}
"""


def test_host_files_are_out_of_reach(lam: Any, server: LiveServer) -> None:
    data_dir = server.data_dir.resolve()
    event = {
        "read": {
            "shadow": "/etc/shadow",
            "database": str(data_dir / "ember.sqlite3"),
            "secret": str(data_dir / "secret.key"),
            "environ": "/proc/1/environ",
            "cmdline": "/proc/1/cmdline",
        },
        "list": {"data_dir": str(data_dir), "proc": "/proc", "root": "/"},
    }
    _, result = run(lam, PROBE, event)
    seen = result.payload
    assert seen["shadow"].get("error") in ("FileNotFoundError", "PermissionError")
    assert seen["database"] == {"error": "FileNotFoundError", "errno": errno.ENOENT}
    assert seen["secret"] == {"error": "FileNotFoundError", "errno": errno.ENOENT}
    assert seen["data_dir"] == {"error": "FileNotFoundError", "errno": errno.ENOENT}
    # PID 1 is the sandbox's own runtime (forked from the zygote, whose environment is two
    # variables), not the host's init.
    assert "PATH=" in seen["environ"]["ok"]  # readable: the function's own process
    assert "EMBER_DATA_DIR" not in seen["environ"]["ok"]
    assert "ember server" not in seen["cmdline"]["ok"]
    pids = [p for p in seen["proc"]["ok"] if p.isdigit()]
    assert "1" in pids
    assert len(pids) < 10  # only the sandbox's own processes
    assert "home" not in seen["root"]["ok"]


def test_another_functions_tmp_and_code_are_invisible(lam: Any, server: LiveServer) -> None:
    marker = uuid.uuid4().hex
    writer = f"""
import os

def handler(event, context):
    with open("/tmp/secret-{marker}", "w") as f:
        f.write("{marker}")
    return sorted(os.listdir("/tmp"))
"""
    a_name, a_result = run(lam, writer)
    assert a_result.payload == [f"secret-{marker}"]
    a_code = server.data_dir.resolve() / "code"
    event = {
        "read": {"a_tmp": f"/tmp/secret-{marker}", "a_code": "/var/task/app.py"},
        "list": {
            "tmp": "/tmp",
            "task": "/var/task",
            "host_code": str(a_code),
            "tasks_mount": "/.ember-tasks",
        },
    }
    _, b_result = run(lam, PROBE, event)
    seen = b_result.payload
    assert seen["a_tmp"] == {"error": "FileNotFoundError", "errno": errno.ENOENT}
    assert seen["tmp"] == {"ok": []}
    assert set(seen["task"]["ok"]) <= {"app.py", "__pycache__"}  # B's own package only
    assert marker not in seen["a_code"]["ok"]  # /var/task is B's own code
    assert "ok" not in seen["host_code"]
    assert seen["tasks_mount"].get("ok", []) == []  # the packages mount is gone after the claim
    assert ok(lam, a_name) == [f"secret-{marker}"]  # A's /tmp is intact


PATHS_PROBE = """
import json
import os
import sys
import traceback


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as exc:
        return "%s: %s" % (type(exc).__name__, exc)


def handler(event, context):
    if event.get("raise"):
        return json.loads("{not json")  # an unhandled error, through the standard library
    try:
        json.loads("{not json")
    except ValueError:
        caught = traceback.format_exc()
    return {
        "mountinfo": read("/proc/self/mountinfo"),
        "mountinfo_1": read("/proc/1/mountinfo"),
        "maps": read("/proc/self/maps"),
        "cmdline": read("/proc/cmdline"),
        "cmdline_1": read("/proc/1/cmdline").replace("\\0", " "),
        "environ_1": read("/proc/1/environ").replace("\\0", " "),
        "stack": "".join(traceback.format_stack()),
        "caught": caught,
        "sys": [sys.executable, sys.prefix, sys.base_prefix, *sys.path, *sys.argv],
        "files": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}),
    }
"""


def _host_paths(server: LiveServer) -> dict[str, str]:
    """Where Ember, its virtualenv, its data and the runtime's interpreter live on the host."""
    return {
        "data dir": str(server.data_dir.resolve()),
        "virtualenv": str(Path(sys.prefix).resolve()),
        "source tree": str(Path(ember.__file__).resolve().parent),
        "interpreter prefix": discover()["python3.12"].prefix,
    }


def test_no_host_path_shows_in_what_a_function_can_read(lam: Any, server: LiveServer) -> None:
    name, result = run(lam, PATHS_PROBE, Timeout=30)
    seen = result.payload
    failed = invoke(lam, name, {"raise": True})
    assert failed.payload["errorType"] == "JSONDecodeError"
    seen["error"] = json.dumps(failed.payload)
    seen["error_log"] = failed.log
    for what, path in _host_paths(server).items():
        for key, text in seen.items():
            assert path not in str(text), f"the {what} ({path}) shows in {key}: {text}"
    # What shows instead: Lambda's own layout.
    assert "/var/runtime/bootstrap.py" in seen["stack"]
    assert "/var/lang/lib/python3.12/json/" in seen["caught"]
    assert "/var/lang/lib/python3.12/json/" in seen["error"]
    assert seen["sys"][:2] == ["/var/lang/bin/python3.12", "/var/lang"]
    # The kernel's command line, and the like, are masked.
    assert Path("/proc/cmdline").read_text().strip()  # the host's is not empty
    assert seen["cmdline"] == ""


# -- privileges --------------------------------------------------------------------------------

SYSCALLS = """
import ctypes
import ctypes.util
import os
import socket

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def result(rc):
    return 0 if rc == 0 else ctypes.get_errno()


def try_os(action):
    try:
        action()
        return 0
    except OSError as exc:
        return exc.errno


def handler(event, context):
    return {
        "mount": result(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)),
        "umount": result(libc.umount2(b"/tmp", 0)),
        "unshare_user": try_os(lambda: os.unshare(os.CLONE_NEWUSER)),
        "unshare_ns": result(libc.unshare(0x00020000)),
        "ptrace_traceme": result(libc.syscall(101, 0, 0, 0, 0)),
        "ptrace_attach": result(libc.syscall(101, 16, 1, 0, 0)),
        "raw_socket": try_os(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                   socket.IPPROTO_ICMP).close()),
        "packet_socket": try_os(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()),
        "setuid_root": try_os(lambda: os.setuid(0)),
        "chroot": try_os(lambda: os.chroot("/tmp")),
        "write_task": try_os(lambda: open("/var/task/new.txt", "w").close()),
        "write_root": try_os(lambda: open("/new.txt", "w").close()),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "no_new_privs": [line.split()[1] for line in open("/proc/self/status")
                         if line.startswith("NoNewPrivs:")][0],
        "seccomp": [line.split()[1] for line in open("/proc/self/status")
                    if line.startswith("Seccomp:")][0],
        "seccomp_filters": [line.split()[1] for line in open("/proc/self/status")
                            if line.startswith("Seccomp_filters:")][0],
        "list_tasks": try_os(lambda: os.listdir("/.ember-tasks")),
    }
"""


def test_privileged_operations_fail(lam: Any) -> None:
    # os.unshare is new in 3.12; libc's unshare is called directly too.
    _, result = run(lam, SYSCALLS, runtime="python3.12")
    seen = result.payload
    for key in (
        "mount",
        "umount",
        "unshare_user",
        "unshare_ns",
        "ptrace_traceme",
        "ptrace_attach",
        "setuid_root",
        "chroot",
    ):
        assert seen[key] == errno.EPERM, (key, seen)
    assert seen["raw_socket"] == errno.EPERM
    assert seen["packet_socket"] in (errno.EPERM, errno.EAFNOSUPPORT)
    assert seen["write_task"] in (errno.EROFS, errno.EACCES)
    assert seen["write_root"] in (errno.EROFS, errno.EACCES)
    assert seen["uid"] != 0 and seen["euid"] != 0 and seen["gid"] != 0
    assert seen["no_new_privs"] == "1"
    assert seen["seccomp"] == "2"  # filter mode
    assert seen["seccomp_filters"] == "2"  # the blank stage and the claimed stage
    assert seen["list_tasks"] == errno.EACCES  # every other package is out of sight


def test_the_hosts_loopback_services_are_unreachable(lam: Any, server: LiveServer) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = """
import os
import socket
import urllib.request

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__

def handler(event, context):
    with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/health", timeout=10) as r:
        ember = r.status
    return {"other": connect(event["port"]), "ember": ember}
"""
    try:
        _, result = run(lam, code, {"port": port})
        assert result.payload == {"other": "ConnectionRefusedError", "ember": 200}
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing arrived
    finally:
        listener.close()
