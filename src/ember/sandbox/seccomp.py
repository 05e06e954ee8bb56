"""The seccomp policy every sandbox runs under, compiled once to classic BPF with libseccomp.

Default allow, with a deny list of what no function needs and an escape would: mounting,
tracing other processes, loading kernel code, new namespaces, keyrings, raw kernel interfaces.
The platform builds the programs; the zygote's children load them with prctl (stdlib only).

The policy is loaded in two stacked stages, because a process's first filter is the costly one
(~0.2 ms here, whatever its size) and a claim is on the cold-start path: a blank sandbox loads
everything but the mount calls its claim still makes (`blank`), and the claim adds a small
filter denying those (`claimed`). Filters only ever add restrictions, and the blank stage runs
no function code, so the instance ends up under the whole deny list either way.
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import pyseccomp

DENIED = (
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "keyctl",
    "add_key",
    "request_key",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "nfsservctl",
)

CLAIM_CALLS = ("mount",)  # a claim binds the code and hides the other packages (no unmount)

NEW_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


@dataclass(frozen=True)
class SeccompPrograms:
    blank: bytes  # loaded by a blank sandbox: DENIED except CLAIM_CALLS, and the clone rules
    claimed: bytes  # stacked on it when claimed: CLAIM_CALLS


def build_programs() -> SeccompPrograms:
    blank = _deny([name for name in DENIED if name not in CLAIM_CALLS])
    for flag in NEW_NAMESPACE_FLAGS:
        blank.add_rule(
            pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag)
        )
    # clone3 passes flags in memory where seccomp cannot look: make libc fall back to clone.
    blank.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    return SeccompPrograms(blank=_export(blank), claimed=_export(_deny(CLAIM_CALLS)))


def _deny(names: Iterable[str]) -> pyseccomp.SyscallFilter:
    policy = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in names:
        try:
            policy.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a syscall on this architecture / libseccomp
    return policy


def _export(policy: pyseccomp.SyscallFilter) -> bytes:
    with tempfile.TemporaryFile() as out:
        policy.export_bpf(out)
        out.seek(0)
        return out.read()
