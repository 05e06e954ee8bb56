"""Code packages: validate uploaded zips, store them content-addressed, unpack once.

An uploaded zip is checked before anything is written: its entry count from the zip's own
end-of-directory records before zipfile builds the directory (`zip_directory.py`), then entry
by entry (no absolute paths, no `..`, no links out of the tree, declared size within the
unzipped limit); it is extracted with a byte counter, so a zip that lies about its sizes is
stopped as soon as it passes the limit. Each (package, runtime) is unpacked once into an
immutable directory with `.pyc` compiled for that runtime; sandboxes mount it read-only at
/var/task.

Every file or directory a request writes is built under a dot-name (`.upload-*`, `.unpack-*`,
`.compose-*`, `.verify-*`) registered as in use, and renamed into place or removed before the
request ends; what a failed removal leaves (EMFILE) is swept by the next garbage collection
(`package_gc.py`), which never touches a registered name. A full disk (ENOSPC, no inodes) is a
`CodeStorageExceededException` that says so, not "Could not unzip".
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ember.errors import (
    CodeStorageExceeded,
    DiskFull,
    InvalidParameterValue,
    RequestEntityTooLarge,
    StorageUnavailable,
)
from ember.functions.zip_directory import MalformedZip, TooManyEntries, check_entry_count
from ember.settings import Limits

_CHUNK = 1024 * 1024
UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."


@dataclass(frozen=True)
class Package:
    sha256: str  # hex
    size: int
    unzipped_size: int


STAGING_PREFIXES = (".upload-", ".unpack-", ".compose-", ".verify-")
INODES_PER_ENTRY = 3  # the entry, its share of directories, a .pyc (and __pycache__)


class PackageStore:
    """Zips under `<code_dir>/zips/<sha256>.zip`, unpacked trees under `<code_dir>/tasks/`."""

    def __init__(self, code_dir: Path, limits: Limits) -> None:
        self.zips = code_dir / "zips"
        self.tasks = code_dir / "tasks"
        self.limits = limits
        self.zips.mkdir(parents=True, exist_ok=True)
        self.tasks.mkdir(parents=True, exist_ok=True)
        # Garbage collection decides under this lock; requests register under it what they use
        # (`holding`) and what they are building (staging names), so it never removes either.
        self.lock = threading.Lock()
        self.held: Counter[str] = Counter()  # zip sha256s and tree names in use by requests
        self.staging: set[str] = set()  # dot-names being built in zips/ or tasks/
        # Called when a staging entry could not be removed (EMFILE): garbage collection sweeps it.
        self.on_leftover: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def holding(self, names: Iterable[str]) -> Iterator[None]:
        """Keep garbage collection away from these zips (sha256) and trees (directory names)
        until the block ends: a request that stores code holds it until its record is stored."""
        names = list(names)
        with self.lock:
            self.held.update(names)
        try:
            yield
        finally:
            with self.lock:
                self.held.subtract(names)
                for name in names:
                    if self.held[name] <= 0:
                        del self.held[name]

    def names_for(
        self, code_sha256: str, runtime: str, layer_shas: tuple[str, ...] = ()
    ) -> list[str]:
        """What a function version with this code, runtime and layers keeps in use."""
        names = [code_sha256, self.task_dir(code_sha256, runtime).name, *layer_shas]
        if layer_shas:
            names.append(self.layers_dir(layer_shas, runtime).name)
        return names

    @contextlib.contextmanager
    def _staged(self, parent: Path, prefix: str, directory: bool) -> Iterator[Path]:
        """A fresh dot-named file or directory in `parent`, registered while the block runs and
        removed after it unless the block renamed it away."""
        try:
            with self.lock:
                if directory:
                    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
                else:
                    fd, name = tempfile.mkstemp(dir=parent, prefix=prefix)
                    os.close(fd)
                    path = Path(name)
                self.staging.add(path.name)
        except OSError as exc:
            _raise_if_storage(exc, parent)
            raise
        try:
            yield path
        finally:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with self.lock:
                self.staging.discard(path.name)
            if os.path.lexists(path):  # removing needs descriptors too: the collector retries
                self.on_leftover()

    def require_room(self, where: Path, size: int, entries: int) -> None:
        """Refuse (CodeStorageExceeded) before writing when the file system plainly lacks the
        bytes or inodes: a budget of INODES_PER_ENTRY per zip entry."""
        try:
            st = os.statvfs(where)
        except OSError:
            return
        if st.f_bavail * st.f_frsize < size:
            raise _disk_full(where, f"{size} bytes are needed")
        if st.f_files and st.f_favail < entries * INODES_PER_ENTRY:
            raise _disk_full(
                where, f"{entries * INODES_PER_ENTRY} inodes are needed for {entries} entries"
            )

    def zip_path(self, sha256: str) -> Path:
        return self.zips / f"{sha256}.zip"

    def _read(self, sha256: str) -> bytes:
        try:
            return self.zip_path(sha256).read_bytes()
        except OSError as exc:
            _raise_if_storage(exc, self.zips)
            raise

    def task_dir(self, sha256: str, runtime: str) -> Path:
        return self.tasks / f"{sha256}-{runtime}"

    def check(self, data: bytes) -> tuple[Package, zipfile.ZipFile]:
        """Validate a zip without writing anything; raises the error AWS gives."""
        if len(data) > self.limits.zip_upload_bytes:
            raise RequestEntityTooLarge(
                f"Zipped size must be smaller than {self.limits.zip_upload_bytes} bytes"
            )
        try:
            # Before zipfile builds one object per entry: a million-entry zip is refused here.
            check_entry_count(data, self.limits.zip_max_entries)
        except TooManyEntries:
            raise InvalidParameterValue(
                f"Zip file has more than {self.limits.zip_max_entries} entries"
            ) from None
        except MalformedZip as exc:
            raise InvalidParameterValue(UNZIP_ERROR) from exc
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            entries = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise InvalidParameterValue(UNZIP_ERROR) from exc
        if len(entries) > self.limits.zip_max_entries:
            raise InvalidParameterValue(
                f"Zip file has more than {self.limits.zip_max_entries} entries"
            )
        declared = 0
        for info in entries:
            _check_entry_name(info.filename)
            declared += info.file_size
        if declared > self.limits.unzipped_bytes:
            raise InvalidParameterValue(_unzipped_too_large(self.limits.unzipped_bytes))
        sha = hashlib.sha256(data).hexdigest()
        return Package(sha, len(data), declared), archive

    def put(self, data: bytes) -> Package:
        """Validate and store a zip (idempotent for identical bytes). A full disk leaves nothing
        behind and is a CodeStorageExceeded."""
        package, archive = self.check(data)
        archive.close()
        target = self.zip_path(package.sha256)
        if not target.exists():
            self.require_room(self.zips, len(data), 1)
            with self._staged(self.zips, ".upload-", directory=False) as tmp:
                try:
                    with open(tmp, "wb") as out:
                        out.write(data)
                    os.replace(tmp, target)
                except OSError as exc:
                    _raise_if_storage(exc, self.zips)
                    raise
        return package

    def unpack(self, sha256: str, runtime: str, interpreter: str | None) -> Path:
        """Unpack a stored package for `runtime` once; returns the immutable task directory."""
        final = self.task_dir(sha256, runtime)
        if final.exists():
            return final
        data = self._read(sha256)
        package, archive = self.check(data)
        with archive:
            self.require_room(self.tasks, package.unzipped_size, len(archive.infolist()))
            with self._building(final, ".unpack-") as staging:
                _extract(archive, staging, self.limits.unzipped_bytes)
                if interpreter:
                    _compile(interpreter, staging)
        return final

    # -- layers ------------------------------------------------------------------------------

    def verify_extract(self, sha256: str) -> None:
        """Extract a stored zip into a scratch directory and drop it: refuses what unpacking
        would refuse (links out of the tree, sizes that lie) when a layer is published."""
        package, archive = self.check(self._read(sha256))
        with archive:
            self.require_room(self.tasks, package.unzipped_size, len(archive.infolist()))
            with self._staged(self.tasks, ".verify-", directory=True) as scratch:
                _extract(archive, scratch, self.limits.unzipped_bytes)

    def declared_size(self, sha256: str) -> int:
        """The unzipped size a stored zip declares (its entries' sizes; extraction enforces it)."""
        with zipfile.ZipFile(self.zip_path(sha256)) as archive:
            return sum(info.file_size for info in archive.infolist())

    def layers_dir(self, layer_shas: tuple[str, ...], runtime: str) -> Path:
        key = hashlib.sha256("\n".join(layer_shas).encode()).hexdigest()
        return self.tasks / f"layers-{key}-{runtime}"

    def compose(self, layer_shas: tuple[str, ...], runtime: str, interpreter: str | None) -> Path:
        """Unpack stored layer zips in order into one immutable directory (mounted at /opt):
        later layers' files replace earlier ones'. Same checks as code packages; `.pyc`
        compiled for `runtime`. Content-addressed by the ordered zips, so built once."""
        final = self.layers_dir(layer_shas, runtime)
        if final.exists():
            return final
        with self._building(final, ".compose-") as staging:
            budget = self.limits.unzipped_bytes
            for sha256 in layer_shas:
                package, archive = self.check(self._read(sha256))
                with archive:
                    self.require_room(self.tasks, package.unzipped_size, len(archive.infolist()))
                    budget -= _extract(archive, staging, budget, overlay=True)
            _check_links(staging)
            if interpreter:
                _compile(interpreter, staging, "/opt")
        return final

    @contextlib.contextmanager
    def _building(self, final: Path, prefix: str) -> Iterator[Path]:
        """A staging directory beside `final`; once the block succeeds it is sealed (read-only
        to sandboxes) and renamed to `final` in one step. On any error nothing is left behind."""
        with self._staged(final.parent, prefix, directory=True) as staging:
            yield staging
            try:
                _seal(staging)
                os.rename(staging, final)
            except OSError as exc:
                if not final.exists():
                    _raise_if_storage(exc, final.parent)
                    raise
                # another request won the race: the staging copy is removed on the way out


def _disk_full(where: Path, detail: str = "") -> CodeStorageExceeded:
    try:
        st = os.statvfs(where)
        free = f"{st.f_bavail * st.f_frsize // 1024} KiB and {st.f_favail} inodes free"
    except OSError:
        free = "free space unknown"
    need = f" ({detail})" if detail else ""
    return CodeStorageExceeded(
        f"Ember's code storage is full: no space left on the disk that holds {where} ({free}){need}. "
        "Delete functions, versions or layers that are no longer needed (their code is reclaimed), "
        "or free disk space, then try again."
    )


def _raise_if_storage(exc: OSError, where: Path) -> None:
    """A failed write of code that is about storage becomes its error: a full disk →
    CodeStorageExceeded, out of file descriptors → StorageUnavailable (503, retry later)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise _disk_full(where) from exc
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        raise StorageUnavailable(
            f"Ember has too many open files to store code under {where} right now; retry later."
        ) from exc


@contextlib.contextmanager
def storing_code() -> Iterator[None]:
    """Around a request that stores code: a full disk met anywhere in it (a metadata write
    included) is Lambda's CodeStorageExceededException."""
    try:
        yield
    except DiskFull as exc:
        raise CodeStorageExceeded(exc.message) from exc


def _unzipped_too_large(limit: int) -> str:
    return f"Unzipped size must be smaller than {limit} bytes"


def _check_entry_name(name: str) -> None:
    if "\x00" in name or "\\" in name:
        raise InvalidParameterValue(f"Zip entry has an invalid name: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidParameterValue(
            f"Zip entry {name!r} points outside the package (absolute path or '..')"
        )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _extract(archive: zipfile.ZipFile, root: Path, limit: int, overlay: bool = False) -> int:
    """Extract into `root`; returns the bytes written. Links are resolved as the kernel will
    (not just lexically): no entry is written through a link, and every link must end up inside
    the package. With `overlay`, entries replace what an earlier archive left at their path."""
    written = 0
    real_root = os.path.realpath(root)
    links: list[tuple[str, Path]] = []
    for info in archive.infolist():
        target = root / info.filename
        if not _inside(os.path.realpath(target.parent), real_root):
            raise InvalidParameterValue(
                f"Zip entry {info.filename!r} points outside the package (through a link)"
            )
        try:
            if overlay and _replaced(target, info.is_dir()):
                _remove(target)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a file where the entry needs a directory
            _raise_if_storage(exc, root.parent)
            raise InvalidParameterValue(UNZIP_ERROR) from exc
        if _is_symlink(info):
            link = archive.read(info).decode("utf-8", "replace")
            resolved = os.path.normpath(os.path.join(os.path.dirname(info.filename), link))
            if os.path.isabs(link) or resolved.startswith(".."):
                raise InvalidParameterValue(
                    f"Zip entry {info.filename!r} is a link that points outside the package"
                )
            try:
                os.symlink(link, target)
            except OSError as exc:
                _raise_if_storage(exc, root.parent)
                raise InvalidParameterValue(UNZIP_ERROR) from exc
            links.append((info.filename, target))
            continue
        mode = (info.external_attr >> 16) & 0o777 if info.create_system == 3 else 0
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with archive.open(info) as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise InvalidParameterValue(_unzipped_too_large(limit))
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            if isinstance(exc, OSError):
                _raise_if_storage(exc, root.parent)
            raise InvalidParameterValue(UNZIP_ERROR) from exc
        os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    # A link that is inside on its own can still lead out through another link (p -> ../..,
    # s -> p/../../..): judge each by where it finally resolves, once all links exist.
    for name, target in links:
        if not _inside(os.path.realpath(target), real_root):
            raise InvalidParameterValue(
                f"Zip entry {name!r} is a link that points outside the package"
            )
    return written


def _replaced(path: Path, is_dir: bool) -> bool:
    """Whether an overlaid entry must first remove what is at its path: any link, or a file
    where a directory goes (and the reverse). Directories merge."""
    if os.path.islink(path):
        return True
    return os.path.lexists(path) and is_dir != os.path.isdir(path)


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _check_links(root: Path) -> None:
    """Every link in the tree resolves inside it (after layers overlaid each other's files)."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), real_root):
                raise InvalidParameterValue(
                    f"{os.path.relpath(path, root)!r} is a link that points outside the layers"
                )


def _compile(interpreter: str, root: Path, mounted_at: str = "/var/task") -> None:
    """Precompile .pyc for the function's runtime (syntax errors surface at invoke time; on a
    full disk some stay uncompiled, which only costs their first import)."""
    try:
        _run_compileall(interpreter, root, mounted_at)
    except OSError as exc:
        _raise_if_storage(exc, root.parent)
        raise


def _run_compileall(interpreter: str, root: Path, mounted_at: str) -> None:
    subprocess.run(
        [
            interpreter,
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(root),
            "-p",
            mounted_at,
            str(root),
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )


def _seal(root: Path) -> None:
    """World-readable, owner-only writable: sandboxes run as another uid and mount it read-only."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o755 if mode & 0o111 else 0o644)
