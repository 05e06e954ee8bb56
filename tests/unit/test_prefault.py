"""A blank sandbox copies the pages it shares with its zygote before its claim (prefault.py)."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

import pytest

from ember.sandbox.zygote import prefault

PAGES = 1024


def _kernel_can_populate() -> bool:
    area = mmap.mmap(-1, prefault.PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    try:
        return bool(
            prefault._libc.madvise(address, prefault.PAGE, prefault.MADV_POPULATE_WRITE) == 0
        )
    finally:
        area.close()


pytestmark = pytest.mark.skipif(
    not _kernel_can_populate(),
    reason="the kernel has no MADV_POPULATE_WRITE (Linux < 5.14): blanks skip it",
)


def _exclusive_pages(address: int, pages: int) -> int:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        data = os.pread(fd, pages * 8, address // prefault.PAGE * 8)
    finally:
        os.close(fd)
    return sum(1 for (entry,) in struct.iter_unpack("Q", data) if entry & (1 << 56))


def _in_child(interrupted: bool) -> tuple[int, int]:
    """Touch PAGES pages, fork; the child prefaults and reports (copied, exclusive after)."""
    area = mmap.mmap(-1, PAGES * prefault.PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, len(area), prefault.PAGE):
        area[offset] = 1
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            copied = prefault.populate_shared_pages(lambda: interrupted)
            os.write(write_end, b"%d %d" % (copied, _exclusive_pages(address, PAGES)))
        finally:
            os._exit(0)
    os.close(write_end)
    report = os.read(read_end, 100).split()
    os.close(read_end)
    os.waitpid(pid, 0)
    area.close()
    return int(report[0]), int(report[1])


def test_a_forked_child_ends_with_its_own_copy_of_every_page_it_shared() -> None:
    copied, exclusive = _in_child(interrupted=False)
    assert copied >= PAGES
    assert exclusive == PAGES


def test_a_waiting_claim_stops_the_copying_early() -> None:
    copied, exclusive = _in_child(interrupted=True)
    assert copied < 2 * prefault.CHECK_EVERY  # asked after each run of CHECK_EVERY or so
    assert exclusive < PAGES
