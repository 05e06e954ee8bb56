"""Stage 1 of a zygote: build its own root (see layout.py) and re-execute the interpreter in it.

Standard library only; runs under the interpreter as the platform started it, with host paths.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ember.sandbox.zygote import jail
    from ember.sandbox.zygote.layout import EMPTY, HOST, LANG, RAPID, RUNTIME, SANDBOX_ROOT
else:
    import jail
    from layout import EMPTY, HOST, LANG, RAPID, RUNTIME, SANDBOX_ROOT


def enter(spec: dict[str, Any], control_fd: int) -> NoReturn:
    """Stage 1 (the interpreter as started, host paths): build the zygote's root, pivot into
    it and re-execute the interpreter from /var/lang. `spec`: root (an empty directory to mount
    the root on), prefix, executable, runtime_dir, zygote_dir, and host_paths: the host's
    directories the zygote needs (packages, the SDK, cgroups), as [path, writable and
    recursive], found under /.host."""
    prefix = os.path.realpath(spec["prefix"])
    executable = os.path.realpath(spec["executable"])
    if not executable.startswith(prefix + "/"):
        raise jail.JailError("%s is not inside its prefix %s" % (executable, prefix))
    jail.unshare(jail.CLONE_NEWNS)
    # A slave: the host's unmounts reach the zygote's copies (which would otherwise keep those
    # file systems busy), nothing the zygote mounts reaches the host.
    jail.mount(None, "/", None, jail.MS_REC | jail.MS_SLAVE)
    root = spec["root"]
    jail.mount("tmpfs", root, "tmpfs", jail.MS_NOSUID | jail.MS_NODEV, "size=1m,mode=0755")
    jail.makedirs(root + EMPTY)
    jail.bind_system(root)
    jail.bind(root, "/etc", "/etc")
    jail.makedirs(root + "/dev")
    jail.mount("/dev", root + "/dev", None, jail.MS_BIND)
    jail.makedirs(root + "/proc")
    jail.view(prefix, root + LANG, root + EMPTY)
    jail.view(spec["runtime_dir"], root + RUNTIME, root + EMPTY)
    jail.view(spec["zygote_dir"], root + RAPID, root + EMPTY)
    jail.makedirs(root + SANDBOX_ROOT, 0o700)
    jail.makedirs(root + HOST, 0o700)
    for path, writable in spec["host_paths"]:
        jail.bind(root + HOST, path, path, readonly=not writable, recursive=writable)
    old = root + "/.old"
    jail.makedirs(old)
    os.chdir(root)
    jail.pivot_root(".", ".old")
    os.chdir("/")
    jail.umount("/.old", jail.MNT_DETACH)
    os.rmdir("/.old")
    jail.mount("proc", "/proc", "proc", jail.MS_NOSUID | jail.MS_NODEV | jail.MS_NOEXEC)
    os.set_inheritable(control_fd, True)
    python = LANG + executable[len(prefix) :]
    env = {
        "PATH": LANG + "/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LD_LIBRARY_PATH": LANG + "/lib",
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, "-I", RAPID, str(control_fd)], env)
