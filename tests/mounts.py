"""File systems a test mounts for itself (as root): a small tmpfs, a loop-mounted image."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(mountpoint: Path, *args: str) -> Iterator[Path]:
    """`mount <args> <mountpoint>` for the duration (skipped where mounting is not permitted);
    unmounted after, lazily if something still holds it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    mountpoint.mkdir(exist_ok=True)
    done = subprocess.run(["mount", *args, str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount {' '.join(args)} here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def tmpfs(mountpoint: Path, size_mb: int) -> contextlib.AbstractContextManager[Path]:
    return mounted(mountpoint, "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs")
