"""Take a blank sandbox's copy-on-write faults ahead of its claim. Standard library only.

A sandbox is forked from its zygote, so its memory starts as pages shared with the zygote.
The first write to each one (Python writes reference counts everywhere it reads) traps into the
kernel, which copies the page: on a virtual machine that costs ~20 µs a page, and a cold start
writes a few hundred of them — most of its time. A blank that is waiting for a claim has time
to spare: it asks the kernel to copy, in bulk and without traps (MADV_POPULATE_WRITE, Linux
5.14+), every page it still shares, so that the claimed instance runs on private memory.

Only pages the zygote had touched are copied (present, not exclusively mapped, per
/proc/self/pagemap): memory the zygote never used stays unallocated. The copies are charged to
the sandbox's memory cgroup, as they would be the moment the function touched them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from typing import Callable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

MADV_POPULATE_WRITE = 23
PAGE = os.sysconf("SC_PAGE_SIZE")
CHECK_EVERY = 128  # pages (~0.4 ms of copying) between looks for a waiting claim
_PRESENT = 1 << 63
_EXCLUSIVE = 1 << 56  # "page exclusively mapped" (Linux 4.2+)
_KERNEL_AREAS = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")


def _private_writable_areas() -> list[tuple[int, int]]:
    areas = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 2 or fields[1] != "rw-p":
                continue
            if len(fields) >= 6 and fields[5] in _KERNEL_AREAS:
                continue
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            areas.append((start, end))
    return areas


def _shared_runs(pagemap: int, start: int, end: int) -> list[tuple[int, int]]:
    """(address, length) of each run of pages in [start, end) still shared with the parent."""
    count = (end - start) // PAGE
    data = os.pread(pagemap, count * 8, start // PAGE * 8)
    entries = struct.unpack("%dQ" % (len(data) // 8), data)
    runs = []
    run_start = -1
    for index, entry in enumerate(entries):
        shared = bool(entry & _PRESENT) and not entry & _EXCLUSIVE
        if shared and run_start < 0:
            run_start = index
        elif not shared and run_start >= 0:
            runs.append((start + run_start * PAGE, (index - run_start) * PAGE))
            run_start = -1
    if run_start >= 0:
        runs.append((start + run_start * PAGE, (len(entries) - run_start) * PAGE))
    return runs


def populate_shared_pages(interrupted: Callable[[], bool]) -> int:
    """Copy the pages still shared with the parent until done or `interrupted()` (asked every
    CHECK_EVERY pages or so: a claim has arrived and must not wait); the number copied.

    Best effort: a kernel without MADV_POPULATE_WRITE, or an area that changed meanwhile, only
    means the faults happen later, as they would have anyway.
    """
    copied = unchecked = 0
    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        for start, end in _private_writable_areas():
            for address, length in _shared_runs(pagemap, start, end):
                for offset in range(0, length, CHECK_EVERY * PAGE):
                    if unchecked >= CHECK_EVERY:
                        if interrupted():
                            return copied
                        unchecked = 0
                    size = min(CHECK_EVERY * PAGE, length - offset)
                    if _libc.madvise(address + offset, size, MADV_POPULATE_WRITE) == 0:
                        copied += size // PAGE
                    unchecked += size // PAGE
    finally:
        os.close(pagemap)
    return copied
