"""Space held back on the data directory's disk so that deleting still works when it is full.

A delete is a write too: SQLite appends the changed pages to the WAL first, and on a full disk
that fails like any other write — the one thing that would free space could not run. The
reserve is a file of `RESERVE_BYTES` allocated blocks (`reserved-space` in the data directory).
A delete that finds the disk full releases it and tries once more; the reserve is made again
when there is room (after garbage collection, and at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_BYTES = 8 * 1024 * 1024
NAME = "reserved-space"


class SpaceReserve:
    def __init__(self, data_dir: Path, size: int = RESERVE_BYTES) -> None:
        self.path = data_dir / NAME
        self.size = size
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        try:
            return os.stat(self.path).st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Allocate the reserve if it is not there and the disk has room; True when it is held."""
        with self._lock:
            if self.held:
                return True
            staging = self.path.with_name(NAME + ".new")
            try:
                fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.size)  # real blocks, not a sparse file
                finally:
                    os.close(fd)
                os.replace(staging, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(staging)
                log.debug("could not reserve %d bytes at %s: %s", self.size, self.path, exc)
                return False
            return True

    def release(self) -> bool:
        """Give the reserved space back to the file system; True when there was some to give."""
        with self._lock:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return False
            log.warning(
                "the disk holding %s is full: released %d reserved bytes so that a delete can run",
                self.path.parent,
                self.size,
            )
            return True
