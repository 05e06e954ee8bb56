"""/tmp disks' parts that need no sandbox (sandbox/tmp_disk.py): the template's sparse copy and
the reservations against the host's free space, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ember.sandbox.tmp_disk import METADATA_MB, TmpDiskFull, TmpDisks, copy_extents, data_extents

MB = 1 << 20


def test_a_sparse_copy_keeps_the_data_and_the_holes(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "dest"
    size = 1024 * MB
    with open(source, "wb") as f:
        f.truncate(size)
        f.seek(4096)
        f.write(b"superblock")
        f.seek(700 * MB)
        f.write(b"x" * 8192)
    fd_in = os.open(source, os.O_RDONLY)
    fd_out = os.open(dest, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        extents = data_extents(fd_in, size)
        assert len(extents) == 2
        copy_extents(fd_in, fd_out, size, extents)
    finally:
        os.close(fd_in)
        os.close(fd_out)
    assert dest.stat().st_size == size
    assert dest.stat().st_blocks * 512 <= 1 * MB  # the holes stayed holes
    with open(dest, "rb") as f:
        f.seek(4096)
        assert f.read(10) == b"superblock"
        f.seek(700 * MB - 4)
        assert f.read(8) == b"\0\0\0\0xxxx"
        f.seek(4096 + 10)
        assert f.read(4096) == bytes(4096)


def test_reservations_stay_within_the_free_space_less_the_headroom(tmp_path: Path) -> None:
    # A budget of 10 GB on whatever disk the tests run on: what is free less a headroom.
    disks = TmpDisks(tmp_path, 10240)
    disks.headroom_mb = disks.free_mb() - 10_000
    if disks.headroom_mb < 0:
        pytest.skip("less than 10 GB free here")
    first = disks.reserve(4096)
    assert first == 4096 + METADATA_MB
    disks.reserve(4096)
    with pytest.raises(TmpDiskFull, match="no room for another 4096 MB /tmp"):
        disks.reserve(4096)
    assert disks.reserved_mb == 2 * first  # a refused reservation takes nothing
    disks.unreserve(first)
    disks.reserve(4096)  # room again
