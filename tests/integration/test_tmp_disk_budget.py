"""/tmp on disk against the host's disk (sandbox/tmp_disk.py), for real: what instances may
write to their /tmp together stays within the free space of the data directory's file system.

The server's data directory is a small file system of its own (a 2 GB ext4 image, loop
mounted): two instances filling their 512 MB /tmp at once fit in it; a third claim while they
hold it is refused with a clear error, and the file system keeps Ember's headroom free; once
the two are idle, the third claim gets its room by destroying one of them, and runs.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LiveServer, free_port
from ember.sandbox.tmp_disk import HEADROOM_MB, METADATA_MB
from invoking import deploy, invoke, ok
from mounts import mounted

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root")

DISK_MB = 2048
HOLDER = """
import os
import time

def handler(event, context):
    written = 0
    chunk = b"\\1" * (4 << 20)
    fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            written += os.write(fd, chunk) >> 20
    except OSError as exc:
        error = exc.errno
    os.fsync(fd)  # on the host's disk now, not only in the page cache
    time.sleep(event.get("hold_s", 0))  # holding its full /tmp
    return {"mb": written, "errno": error}
"""


def _free_mb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 GB ext4 file system of its own, mounted on tmp_path/data."""
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs is None:
        pytest.skip("mkfs.ext4 is not installed")
    image, mountpoint = tmp_path / "disk.img", tmp_path / "data"
    mountpoint.mkdir()
    subprocess.run(
        [mkfs, "-q", "-F", "-m", "0", "-O", "^has_journal", str(image), f"{DISK_MB}M"], check=True
    )
    with mounted(mountpoint, "-o", "loop", str(image)) as disk:
        yield disk


def test_instances_cannot_fill_the_hosts_disk_with_their_tmp(small_disk: Path) -> None:
    free_at_start = _free_mb(small_disk)
    # Two 512 MB /tmps fit in what the headroom leaves, a third does not.
    per_claim = 512 + METADATA_MB
    assert 2 * per_claim <= free_at_start - HEADROOM_MB < 3 * per_claim, free_at_start
    live = LiveServer(small_disk, free_port(), extra_env={"EMBER_SANDBOX_POOL": "1"})
    live.start()
    try:
        lam = live.client("lambda")
        holder = deploy(lam, HOLDER, "holder", MemorySize=1024, Timeout=60)
        other = deploy(lam, "def handler(event, context):\n    return 'ran'\n", "other")
        results: list[Any] = []

        def hold() -> None:
            results.append(ok(live.client("lambda"), holder, {"hold_s": 8}))

        threads = [threading.Thread(target=hold) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while _free_mb(small_disk) > free_at_start - 2 * 500 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert time.monotonic() < deadline, "the two instances did not fill their /tmp in time"
        # Both hold a full /tmp now: the disk kept its headroom, and a third claim is refused.
        assert _free_mb(small_disk) >= HEADROOM_MB
        with pytest.raises(ClientError) as refused:
            invoke(lam, other)
        assert (
            refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        )  # may pass: not a failure
        assert "no room for another 512 MB /tmp" in refused.value.response["Error"]["Message"]
        for thread in threads:
            thread.join()
        assert len(results) == 2
        for result in results:
            assert result["errno"] == errno.ENOSPC
            assert 500 <= result["mb"] <= 512
        # Idle now: the third claim destroys one of them for its room, and runs.
        assert ok(lam, other) == "ran"
    finally:
        live.stop()
    assert _free_mb(small_disk) >= free_at_start - 16  # every /tmp image is gone
