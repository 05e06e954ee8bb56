"""Each sandbox's /tmp on disk: an ext4 file system of its own, on a loop device, capped per claim.

Lambda's /tmp is disk: EphemeralStorage MB (512-10,240) that is not charged to MemorySize (a
128 MB function can fill a 512 MB /tmp and gets ENOSPC, not an OOM kill), private to the
instance and gone with it. Here:

- A template image is made once per server start (`mkfs.ext4`, ~15 ms): sparse, sized for the
  largest EphemeralStorage, no journal (nothing in /tmp outlives its instance), inode tables
  left unwritten (`lazy_itable_init`; the sandbox mounts with `noinit_itable`), so a fresh
  image holds ~200 KB of data.
- Building a blank sandbox, off the cold-start path and while the zygote forks it: the
  template's data is copied into a new image (its data runs, found once with SEEK_DATA, by
  copy_file_range: ~0.3 ms), attached to a free loop device (LOOP_CONFIGURE, ~1 ms) and
  deleted at once; the file system is mounted detached (fsopen/fsmount, ~1 ms) and capped.
  The device does direct I/O (the file pages are cached once, in the file system above:
  charged to the sandbox's memory cgroup like any page cache, and reclaimable once written)
  and clears itself when its last user is gone (autoclear). The blank receives the mount and
  attaches it at /tmp (move_mount, ~30 µs; jail.py); when the sandbox's mount namespace goes,
  the file system is unmounted, the device clears and the deleted image's blocks are freed.
  There is no file to delete, not even after a crash.
- The cap: ext4 keeps `reserved_clusters` (/sys/fs/ext4/<device>/) free for itself, for root
  too; set to the free clusters less EphemeralStorage, a write beyond it fails with ENOSPC. A
  blank is capped at 512 MB, Lambda's default; a claim for another size rewrites it (one write).
- The host's disk: a claim reserves its EphemeralStorage, plus what the image's metadata may
  take beyond it, against the free space of the images' file system less a headroom kept for
  Ember's own files. A claim that does not fit raises TmpDiskFull (the caller may free
  reservations, e.g. by destroying idle instances, and try again), so what instances can
  write together never exceeds what the disk has.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

BLOCK = 4096
BLANK_MB = 512  # a blank's cap until claimed: Lambda's default EphemeralStorage
INODES = 131072  # 32 MB of inode tables (written only as they are used)
METADATA_MB = 40  # what a full image may hold beyond its cap: inode tables, bitmaps
HEADROOM_MB = 512  # free space on the images' file system no claim may take
TEMPLATE = "template.img"

LOOP_CTL_GET_FREE = 0x4C82
LOOP_SET_FD = 0x4C00
LOOP_SET_STATUS64 = 0x4C04
LOOP_SET_DIRECT_IO = 0x4C08
LOOP_SET_BLOCK_SIZE = 0x4C09
LOOP_CONFIGURE = 0x4C0A  # Linux 5.8+
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16
# struct loop_info64: device, inode, rdevice, offset, sizelimit; number, encrypt type,
# encrypt key size, flags; file name, crypt name, encrypt key; init[2]
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
ATTACH_ATTEMPTS = 16  # another process may take the free device between asking and attaching
MOUNT_OPTIONS = ("noinit_itable",)  # a fresh image's inode tables stay unwritten (and sparse)

# The new mount API (Linux 5.2+; the same numbers on every architecture).
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x2, 0x4
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class TmpDiskUnavailable(Exception):
    """This host cannot put /tmp on disk (no loop devices, no mkfs.ext4)."""


class TmpDiskFull(Exception):
    """The images' file system has no room for another instance's /tmp."""


def _loop_info(flags: int) -> bytes:
    return _LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)


def _configure(device: int, image: int, flags: int) -> None:
    config = struct.pack("=II", image, BLOCK) + _loop_info(flags) + bytes(64)
    try:
        fcntl.ioctl(device, LOOP_CONFIGURE, config)
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):
            raise
    # Before Linux 5.8: attach, then set the flags (a window LOOP_CONFIGURE closes).
    fcntl.ioctl(device, LOOP_SET_FD, image)
    fcntl.ioctl(device, LOOP_SET_STATUS64, _loop_info(flags & ~LO_FLAGS_DIRECT_IO))
    with contextlib.suppress(OSError):
        fcntl.ioctl(device, LOOP_SET_BLOCK_SIZE, BLOCK)
        if flags & LO_FLAGS_DIRECT_IO:
            fcntl.ioctl(device, LOOP_SET_DIRECT_IO, 1)


def attach(image: int, flags: int = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO) -> tuple[int, int]:
    """Attach the open image to a free loop device: (its number, the open device)."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(ATTACH_ATTEMPTS):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            device = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            try:
                _configure(device, image, flags)
            except OSError as exc:
                os.close(device)
                if exc.errno == errno.EBUSY:
                    continue
                raise
            return number, device
    finally:
        os.close(control)
    raise OSError(errno.EBUSY, "every free loop device was taken before it could be attached")


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def mount_detached(device: str, readonly: bool = False) -> int:
    """The ext4 file system on `device`, mounted nosuid and nodev but attached nowhere: a mount
    descriptor (fsmount) that a sandbox attaches with move_mount."""
    fs = _syscall(SYS_FSOPEN, b"ext4", FSOPEN_CLOEXEC)
    try:
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, b"source", device.encode(), 0)
        for option in (*MOUNT_OPTIONS, "ro") if readonly else MOUNT_OPTIONS:
            _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_FLAG, option.encode(), None, 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0)
        return _syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each run of data in a sparse file (SEEK_DATA / SEEK_HOLE)."""
    extents = []
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from here
                break
            raise
        position = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, position))
    return extents


def copy_extents(source: int, dest: int, size: int, extents: list[tuple[int, int]]) -> None:
    """`source`'s data runs into `dest`, at the same offsets; the rest stays a hole."""
    os.ftruncate(dest, size)
    for start, end in extents:
        position = start
        while position < end:
            copied = os.copy_file_range(source, dest, end - position, position, position)
            if copied <= 0:
                raise OSError(errno.EIO, "copying the /tmp template stopped short")
            position += copied


class TmpDisk:
    """One sandbox's /tmp disk: a file system mounted detached, on a loop device over a deleted
    image, capped at BLANK_MB until claimed."""

    def __init__(self, owner: TmpDisks, number: int, image: int) -> None:
        self.owner = owner
        self.number = number  # /dev/loopN
        self.image: int | None = image  # kept to read how much of the disk is written
        self.mount: int | None = None  # the detached mount, until the sandbox has it
        self.limit: int | None = None  # /sys/fs/ext4/loopN/reserved_clusters
        self.free_clusters = 0
        self.cap_mb = 0
        self.reserved_mb = 0  # what this disk holds of the owner's budget (once claimed)

    def _mount(self) -> None:
        """Mount it (detached), tidy its root if the template could not be, and cap it."""
        self.mount = mount_detached(f"/dev/loop{self.number}")
        root = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.mount)
        try:
            if os.fstat(root).st_mode & 0o7777 != 0o1777:  # a template made without debugfs
                os.fchmod(root, 0o1777)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir("lost+found", dir_fd=root)
            st = os.fstatvfs(root)
        finally:
            os.close(root)
        if st.f_frsize != BLOCK or st.f_bfree < self.owner.max_mb * ((1 << 20) // BLOCK):
            raise OSError(errno.EIO, f"loop{self.number} does not hold a fresh /tmp disk")
        self.free_clusters = st.f_bfree
        self.limit = os.open(
            f"/sys/fs/ext4/loop{self.number}/reserved_clusters", os.O_WRONLY | os.O_CLOEXEC
        )
        self.cap(BLANK_MB)

    def handed_over(self) -> None:
        """The sandbox has its own descriptor of the mount: let go of ours."""
        if self.mount is not None:
            os.close(self.mount)
            self.mount = None

    def cap(self, mb: int) -> None:
        """At most `mb` MB can be written to this disk from now on (it is still empty)."""
        if mb == self.cap_mb:
            return
        if self.limit is None:
            raise OSError(errno.EBADF, "the /tmp disk is not mounted")
        reserved = self.free_clusters - mb * ((1 << 20) // BLOCK)
        if reserved < 0:
            raise OSError(errno.ENOSPC, f"a /tmp disk cannot hold {mb} MB")
        os.pwrite(self.limit, b"%d" % reserved, 0)
        self.cap_mb = mb

    def written_mb(self) -> int:
        """What the image takes on the host's disk."""
        if self.image is None:
            return 0
        return os.fstat(self.image).st_blocks * 512 >> 20

    def close(self) -> None:
        """Give back its reservation and descriptors (idempotent). The disk itself goes when the
        sandbox's mount namespace does (or now, if no sandbox has it)."""
        self.owner.release(self)
        for name in ("mount", "image", "limit"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)


class TmpDisks:
    """Makes /tmp disks and keeps what their claims may write within the host's free space."""

    def __init__(self, directory: Path, max_mb: int, headroom_mb: int = HEADROOM_MB) -> None:
        self.directory = directory
        self.max_mb = max_mb
        self.headroom_mb = headroom_mb
        self.template = directory / TEMPLATE
        self.size = (max_mb + METADATA_MB + 16) << 20
        self.extents: list[tuple[int, int]] = []  # the template's data
        self.reserved_mb = 0
        self.claimed: set[TmpDisk] = set()

    def start(self) -> None:
        """Delete images a previous server left (a crash between creating and deleting one)
        and make the template; TmpDiskUnavailable when this host cannot."""
        if not os.path.exists("/dev/loop-control"):
            raise TmpDiskUnavailable("there are no loop devices (/dev/loop-control)")
        mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
        if mkfs is None:
            raise TmpDiskUnavailable("mkfs.ext4 is not installed (Debian/Ubuntu: e2fsprogs)")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.statvfs(self.directory)
        size_mb = st.f_blocks * st.f_frsize >> 20
        if size_mb < self.headroom_mb + BLANK_MB + METADATA_MB:
            raise TmpDiskUnavailable(
                f"the file system of {self.directory} ({size_mb} MB) is too small"
            )
        made = subprocess.run(
            [
                mkfs,
                "-q",
                "-F",
                "-b",
                str(BLOCK),
                "-m",
                "0",
                "-N",
                str(INODES),
                "-O",
                "^has_journal,^resize_inode",
                "-E",
                "lazy_itable_init=1,nodiscard",
                str(self.template),
                f"{self.size >> 10}k",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise TmpDiskUnavailable(f"mkfs.ext4 failed: {made.stderr.strip() or made.returncode}")
        self._tidy_template()
        template = os.open(self.template, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.extents = data_extents(template, self.size)
            data = sum(end - start for start, end in self.extents)
            if data > 64 << 20:
                raise TmpDiskUnavailable(f"{self.directory}'s file system keeps no sparse files")
            # Attach and mount it once, read-only: this host has what a disk needs.
            try:
                number, device = attach(template, LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY)
            except OSError as exc:
                raise TmpDiskUnavailable(f"cannot attach a loop device: {exc}") from exc
            try:
                os.close(mount_detached(f"/dev/loop{number}", readonly=True))
            except OSError as exc:
                raise TmpDiskUnavailable(
                    f"cannot mount an ext4 file system (fsmount): {exc}"
                ) from exc
            finally:
                os.close(device)
        finally:
            os.close(template)

    def _tidy_template(self) -> None:
        """/tmp's root world-writable and sticky, and no lost+found (the sandbox does both
        itself, for a few more µs, when debugfs is missing)."""
        debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
        if debugfs is None:
            return
        subprocess.run(
            [debugfs, "-w", "-f", "-", str(self.template)],
            input="rmdir lost+found\nsif <2> mode 041777\n",
            capture_output=True,
            text=True,
            check=False,
        )

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.template.unlink()

    def create(self) -> TmpDisk:
        """A new disk, mounted detached and capped, its image already deleted (blocking)."""
        path = self.directory / f"{uuid.uuid4().hex}.img"
        template = os.open(self.template, os.O_RDONLY | os.O_CLOEXEC)
        try:
            image = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                copy_extents(template, image, self.size, self.extents)
                number, device = attach(image)
            except BaseException:
                os.close(image)
                raise
            finally:
                path.unlink()
        finally:
            os.close(template)
        disk = TmpDisk(self, number, image)
        try:
            disk._mount()
        except BaseException:
            disk.close()
            raise
        finally:
            os.close(device)  # the file system holds the device now (or it clears)
        return disk

    def free_mb(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize >> 20

    def reserve(self, mb: int) -> int:
        """Reserve room for a /tmp of `mb` MB; the MB reserved (give it to `hold`, or back to
        `unreserve`). TmpDiskFull when the disk does not have it."""
        need = mb + METADATA_MB
        free = self.free_mb() - self.headroom_mb
        if self.reserved_mb + need > free:
            # What running instances have written is already out of `free`: count it once.
            written = sum(min(disk.written_mb(), disk.reserved_mb) for disk in self.claimed)
            if self.reserved_mb - written + need > free:
                raise TmpDiskFull(
                    f"no room for another {mb} MB /tmp on the file system of {self.directory}: "
                    f"{max(0, free + self.headroom_mb)} MB free, of which "
                    f"{self.reserved_mb - written} MB are promised to running instances' /tmp "
                    f"and {self.headroom_mb} MB kept for Ember's own files"
                )
        self.reserved_mb += need
        return need

    def hold(self, disk: TmpDisk, reserved_mb: int) -> None:
        disk.reserved_mb = reserved_mb
        self.claimed.add(disk)

    def unreserve(self, reserved_mb: int) -> None:
        self.reserved_mb -= reserved_mb

    def release(self, disk: TmpDisk) -> None:
        if disk in self.claimed:
            self.claimed.discard(disk)
            self.reserved_mb -= disk.reserved_mb
            disk.reserved_mb = 0
