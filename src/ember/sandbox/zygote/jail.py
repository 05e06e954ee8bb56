"""Building one sandbox, in the order it must happen. Standard library only (ctypes over libc).

This module runs inside the zygote's children, under whichever Python the function's runtime
is (3.10-3.13), so it must import nothing outside the standard library.

The zygote runs in a root of its own (layout.py); paths here are the zygote's.

The order lives here and only here:
  outer child (host PID namespace):
    1. join the instance's cgroups
    2. unshare mount, PID, IPC, UTS, network and cgroup namespaces
    3. private mount propagation; tmpfs root; read-only binds of the system directories,
       /var/lang and the runtime; /etc; /dev; /tmp (a tmpfs when it is not on disk);
       pivot_root (the zygote's tree stays at /.old)
    4. fork the inner child (PID 1 of the new namespace) and exit
  inner child (a "blank" sandbox until claimed; blanks are pre-built in a pool):
    5. mount /proc; views (overlays, layout.py) of the SDK and of every package, from /.old,
       which is then detached (this waits for an RCU grace period: done here, it does not hold
       the zygote up); mask what a function must not read in /proc (/proc/cmdline...); make /
       read-only, hostname, loopback up, Ember's API listener; attach /tmp (its own ext4 file
       system, which the platform mounted and sends, when on disk); the blank seccomp stage;
       hand the listener to the platform;
       copy the pages still shared with the zygote (prefault.py) unless a claim is already
       waiting; wait for a claim
    6. on claim: bind the function's code at /var/task and its layers at /opt, size /tmp (a
       tmpfs; a disk's cap is set by the platform), hide the other packages
    7. rlimits, drop to the sandbox uid/gid, no_new_privs, the claimed seccomp stage
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import platform
import resource
import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.sandbox.zygote import layout
else:
    import layout

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

TASKS_MOUNT = "/.ember-tasks"
_SYS_MOVE_MOUNT = 429  # Linux 5.2+, the same number on every architecture
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 4

# What container runtimes mask in /proc: the kernel's command line, memory, keys, timers and
# the scheduler's view of every task on the host. Files get /dev/null bound over them,
# directories an empty read-only tmpfs; those this kernel lacks are skipped.
MASKED_FILES = (
    "/proc/cmdline",
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
)
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound")

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine(), 155)


class JailError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise JailError("%s: %s" % (what, os.strerror(err)))


def _b(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
        "mount %s on %s" % (source, target),
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount %s" % target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        ),
        "prctl %d" % option,
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(bpf: bytes) -> None:
    """Install a classic-BPF seccomp program (built by the platform with libseccomp)."""
    if not bpf:
        return
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(
        _libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "seccomp",
    )


def makedirs(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def bind(
    root: str, source: str, target: str, readonly: bool = True, recursive: bool = False
) -> None:
    dest = root + target
    if os.path.isdir(source):
        makedirs(dest)
    else:
        makedirs(os.path.dirname(dest))
        if not os.path.exists(dest):
            open(dest, "a").close()
    flags = MS_BIND | (MS_REC if recursive else 0)
    mount(source, dest, None, flags)
    if readonly:
        mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def view(source: str, target: str, empty: str = layout.EMPTY) -> bool:
    """Mount directory `source` read-only at `target` as a file system whose root is its own: an
    overlay of it and the empty directory `empty`, both named `/proc/self/fd/N` (all that
    /proc/self/mountinfo shows of them). A bind where overlayfs is unavailable (and then the
    mount's root, `source`'s path in its file system, shows). True when it is an overlay."""
    makedirs(target)
    lower = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    blank = os.open(empty, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        layers = "lowerdir=/proc/self/fd/%d:/proc/self/fd/%d" % (lower, blank)
        try:
            mount("overlay", target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, layers)
            return True
        except JailError:
            pass
    finally:
        os.close(lower)
        os.close(blank)
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return False


def bind_system(root: str) -> None:
    """The host's system directories, read-only, at the same paths (usr-merge links stay links)."""
    for top in layout.SYSTEM_DIRS:
        host = "/" + top
        if os.path.islink(host):
            os.symlink(os.readlink(host), root + "/" + top)
        elif os.path.isdir(host):
            bind(root, host, "/" + top)


def join_cgroups(procs_files: list[str]) -> None:
    pid = str(os.getpid())
    for path in procs_files:
        with open(path, "w") as f:
            f.write(pid)


def build_root(spec: dict[str, Any]) -> None:
    """Steps 2-3: namespaces and the private root. Runs in the outer child."""
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if spec.get("isolate_network", True):
        flags |= CLONE_NEWNET
    unshare(flags)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = spec["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    bind_system(root)
    # The interpreter and the runtime: views already (layout.py), so binding them shows nothing.
    bind(root, layout.LANG, layout.LANG)
    for name in sorted(os.listdir(layout.RUNTIME)):
        if name.endswith(".py"):
            bind(root, layout.RUNTIME + "/" + name, layout.RUNTIME + "/" + name)
    makedirs(root + TASKS_MOUNT, 0o700)
    _make_etc(root, spec)
    _make_dev(root)
    for path in ("/proc", "/var/task", "/opt"):
        makedirs(root + path)
    makedirs(root + "/tmp", 0o1777)
    if not spec.get("tmp_disk"):  # in memory: a tmpfs, sized by the claim
        mount(
            "tmpfs",
            root + "/tmp",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            "size=%dm,mode=1777" % spec["tmp_mb"],
        )
    old = root + "/.old"
    makedirs(old)
    os.chdir(root)
    pivot_root(".", ".old")
    os.chdir("/")


def _finish_root(spec: dict[str, Any]) -> None:
    """Step 5's views, made from the zygote's tree (at /.old), which is then detached."""
    old = "/.old"
    # The SDK: a view of each package, made for this sandbox (a view lives as long as its
    # mount, and the platform byte-compiles the SDK while the first sandboxes already run).
    for source, target in spec["views"]:
        if os.path.isdir(old + source):
            view(old + source, target, old + layout.EMPTY)
        else:
            _copy(old + source, target)
    # Every function's unpacked code, reachable by root only until the sandbox is claimed:
    # claim() binds one package at /var/task and hides this mount before dropping privileges.
    view(old + spec["tasks_root"], TASKS_MOUNT, old + layout.EMPTY)
    umount(old, MNT_DETACH)
    os.rmdir(old)


def _copy(source: str, dest: str) -> None:
    """A single file of the SDK (six.py), copied: a bind would show where it came from."""
    makedirs(os.path.dirname(dest))
    with open(source, "rb") as src, open(dest, "wb") as out:
        out.write(src.read())
    os.chmod(dest, 0o444)


def _make_etc(root: str, spec: dict[str, Any]) -> None:
    etc = root + "/etc"
    makedirs(etc)
    uid, gid = spec["uid"], spec["gid"]
    files = {
        "passwd": "root:x:0:0:root:/root:/sbin/nologin\n"
        "sbx_user1051:x:%d:%d::/tmp:/sbin/nologin\n" % (uid, gid),
        "group": "root:x:0:\nsbx_user1051:x:%d:\n" % gid,
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "hostname": "localhost\n",
        "resolv.conf": "",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    for name, text in files.items():
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(etc, name), 0o644)
    for name in ("ld.so.cache", "localtime", "ssl/certs", "ca-certificates", "mime.types"):
        host = "/etc/" + name
        if os.path.exists(host):
            bind(root, os.path.realpath(host), "/etc/" + name)


def _make_dev(root: str) -> None:
    dev = root + "/dev"
    makedirs(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in ("null", "zero", "full", "random", "urandom"):
        target = dev + "/" + name
        open(target, "a").close()
        mount("/dev/" + name, target, None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, dev + "/" + name)
    makedirs(dev + "/shm", 0o1777)
    mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")


def _loopback_up() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1 | 0x40))
    finally:
        sock.close()


def ready_blank(spec: dict[str, Any]) -> socket.socket | None:
    """Step 5: the inner child's part that needs no function (before it waits for a claim).

    Returns a socket listening on the sandbox's own 127.0.0.1:<api_port>, for the platform to
    serve: it belongs to the sandbox's network namespace wherever its descriptor goes, so the
    platform can relay what functions send there to Ember's API — with no thread in the sandbox.
    """
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _finish_root(spec)
    _mask_proc()
    # Seal the root now: the claim only mounts onto existing mountpoints (and /tmp is its own).
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_libc.sethostname(b"localhost", 9), "sethostname")
    if not spec.get("isolate_network", True):
        return None
    _loopback_up()
    port = spec.get("api_port")
    if not port:
        return None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(128)
    return listener


def _mask_proc() -> None:
    for path in MASKED_FILES:
        if os.path.exists(path):
            mount("/dev/null", path, None, MS_BIND)
    for path in MASKED_DIRS:
        if os.path.isdir(path):
            mount(
                "tmpfs",
                path,
                "tmpfs",
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=4k,mode=0555",
            )


def attach_tmp_disk(mount_fd: int) -> None:
    """Step 5's /tmp on disk: the platform mounted the sandbox's own file system, detached
    (sandbox/tmp_disk.py); attach it at /tmp. When the sandbox's mount namespace goes, it is
    unmounted, and its loop device lets go of its (already deleted) image."""
    flags = ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)
    try:
        result = _libc.syscall(
            _SYS_MOVE_MOUNT, ctypes.c_int(mount_fd), b"", ctypes.c_int(AT_FDCWD), b"/tmp", flags
        )
        _check(result, "move_mount /tmp")
    finally:
        os.close(mount_fd)


def claim(task_subdir: str, tmp_mb: int | None, opt_subdir: str | None = None) -> None:
    """Step 6: attach one function's code read-only at /var/task (and its composed layers, if
    any, read-only at /opt), then size /tmp (when it is a tmpfs: None for a disk)."""
    for target, subdir in (("/var/task", task_subdir), ("/opt", opt_subdir)):
        if subdir is None:
            continue
        if "/" in subdir or subdir in ("", ".", ".."):
            raise JailError("bad package directory name %r" % subdir)
        mount(TASKS_MOUNT + "/" + subdir, target, None, MS_BIND)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # Hide the other packages under an empty read-only tmpfs: unmounting would be cleaner but
    # waits for an RCU grace period, 0.05 ms on an idle machine and 20-130 ms on a busy one.
    mount(
        "tmpfs",
        TASKS_MOUNT,
        "tmpfs",
        MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "size=4k,mode=0",
    )
    if tmp_mb is not None:
        mount(None, "/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, "size=%dm,mode=1777" % tmp_mb)


def finish(spec: dict[str, Any], claimed_filter: bytes) -> None:
    """Step 7: limits, then drop every privilege for good."""
    nofile = spec["nofile"]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    # Changing uid made the process non-dumpable, which hands /proc/self/* to root: /dev/stdout
    # (a link to /proc/self/fd/1) and /proc/self/environ would refuse the function itself.
    # Core dumps stay off (RLIMIT_CORE 0) and seccomp forbids ptrace.
    prctl(PR_SET_DUMPABLE, 1)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    load_seccomp(claimed_filter)
