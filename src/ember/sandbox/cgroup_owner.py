"""Who owns a cgroup subtree, and reaping the subtrees of servers that died.

Each server keeps its sandboxes under a subtree of its own, `ember-<tag>` (one per data
directory), and cleans that subtree at start. A server that dies without stopping (SIGKILL, a
crash) leaves it behind with whatever ran in it; a frozen sandbox does not even die of the
SIGKILL its zygote's death sends it until it is thawed. If no server ever starts on that data
directory again (a temporary one, say), nothing would end those sandboxes.

So each server marks its subtree with an empty child cgroup named after itself,
`owner-<pid>-<start time>` (the start time tells a reused pid apart), and at start reaps every
other `ember-*` subtree whose owner is gone: thaws and kills what runs there, then removes the
cgroups. A subtree without a marker (an older Ember's, or one whose server is starting) is only
removed when nothing runs in it and it is over a minute old.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from ember.sandbox.cgroups import V1Cgroup, V2Cgroup

log = logging.getLogger(__name__)

PREFIX = "ember-"
MARKER = "owner-"
_V1_EXTRA = ("cpuset",)  # created for the subtree only, never per sandbox
UNMARKED_GRACE_S = 60.0  # an unmarked subtree younger than this may be a server starting up


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def marker_name(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{MARKER}{pid}-{start_time(pid) or 0}"


def alive(marker: str) -> bool:
    """Is the server a marker names still running?"""
    pid, _, started = marker[len(MARKER) :].partition("-")
    if not pid.isdigit():
        return False
    return start_time(int(pid)) == started


def mark(root: Path, subtree: str, version: int) -> Path:
    """Mark `subtree` as this process's (after its own stale clean-up, which would remove it)."""
    parent = root / "memory" / subtree if version == 1 else root / subtree
    path = parent / marker_name()
    path.mkdir(exist_ok=True)
    return path


def reap_orphans(root: Path, own: str, version: int) -> int:
    """Kill and remove the subtrees of servers that are gone; the number of subtrees removed."""
    base = root / "memory" if version == 1 else root
    try:
        subtrees = [p for p in base.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return 0
    reaped = 0
    for subtree in subtrees:
        if subtree.name == own:
            continue
        try:
            children = [p for p in subtree.iterdir() if p.is_dir()]
        except OSError:
            continue
        markers = [p.name for p in children if p.name.startswith(MARKER)]
        if any(alive(m) for m in markers):
            continue
        if not markers and (_busy(root, subtree.name, version, children) or _young(subtree)):
            # An older Ember's (perhaps alive), or a server's that is starting and has not
            # marked it yet: not ours to judge.
            continue
        try:
            _remove(root, subtree.name, version, [p.name for p in children])
        except OSError as exc:
            log.warning(
                "could not remove the cgroups of a server that is gone (%s): %s", subtree.name, exc
            )
            continue
        reaped += 1
    if reaped:
        log.info(
            "removed the cgroups (and any sandboxes left) of %d Ember servers that are gone", reaped
        )
    return reaped


def _young(path: Path) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return True
    return time.time() - max(stat.st_mtime, stat.st_ctime) < UNMARKED_GRACE_S


def _busy(root: Path, subtree: str, version: int, children: list[Path]) -> bool:
    procs_dir = root / "memory" / subtree if version == 1 else root / subtree
    for path in (procs_dir, *children):
        with contextlib.suppress(OSError):
            if (path / "cgroup.procs").read_text().strip():
                return True
    return False


def _remove(root: Path, subtree: str, version: int, children: list[str]) -> None:
    for name in children:
        if version == 1:
            group: V1Cgroup | V2Cgroup = V1Cgroup(root, subtree, name)
        else:
            group = V2Cgroup(root / subtree / name)
        group.kill()
        group.remove()
    tops = (
        [root / c / subtree for c in (*V1Cgroup.CONTROLLERS, *_V1_EXTRA)]
        if version == 1
        else [root / subtree]
    )
    for top in tops:
        with contextlib.suppress(FileNotFoundError):
            top.rmdir()
