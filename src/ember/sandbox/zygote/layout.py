"""Where things live inside a zygote and its sandboxes, and the zygote's own root. Stdlib only.

A function must not learn the host's paths (the data directory, the virtualenv, Ember's source
tree, the interpreter's installation prefix) from its tracebacks, `__file__`s, /proc/self/maps,
/proc/1/cmdline or /proc/self/mountinfo. So the zygote does not run where it was started: it
builds a root of its own in a private mount namespace, in which

    /var/lang      the interpreter's installation prefix (Lambda's path)
    /var/runtime   the language runtime (runtimes/python: bootstrap.py)
    /var/rapid     the zygote's own code (this directory)
    /usr, /bin, /lib..., /etc, /dev   the host's, read-only
    /.host/<path>  the few host directories the zygote needs (cgroups, packages, the SDK)
    /.sandbox      the mount point each sandbox's root is built on

and re-executes its interpreter there (zygote_root.py) as `/var/lang/bin/pythonX.Y -I /var/rapid <fd>`. Every
module it imports, and so every module a sandbox inherits, then has a neutral path.

Binding a host directory does not hide where it came from: /proc/self/mountinfo shows a bind
mount's root as its path inside its file system (`/root/.pyenv/versions/3.12.1`). A *view*
is therefore an overlay mount instead, whose root is its own: a read-only overlay of the
directory and an empty one, both named as `/proc/self/fd/N` (the option string is all that
mountinfo shows of them). Overlays cost ~40 µs to mount against ~10 µs for a bind; where
overlayfs is missing a view falls back to a bind (and the mount's root shows again).
"""

LANG = "/var/lang"
RUNTIME = "/var/runtime"
RAPID = "/var/rapid"
HOST = "/.host"
SANDBOX_ROOT = "/.sandbox"
EMPTY = "/.empty"  # the empty lower layer of every view

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
