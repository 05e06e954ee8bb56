"""PackageStore: uploaded zips checked before anything is written, stored by content, unpacked once."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import marshal
import os
import stat
import struct
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import make_zip
from ember.errors import InvalidParameterValue, RequestEntityTooLarge
from ember.functions.packages import UNZIP_ERROR, PackageStore
from ember.settings import Limits

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def store(tmp_path: Path) -> PackageStore:
    return PackageStore(tmp_path / "data" / "code", Limits())


def small_store(tmp_path: Path, **limits: int) -> PackageStore:
    return PackageStore(tmp_path / "data" / "code", dataclasses.replace(Limits(), **limits))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes | str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, content in entries:
            archive.writestr(info, content)
    return buffer.getvalue()


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def unix_file(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# -- storing --------------------------------------------------------------------------------


def test_put_stores_the_zip_under_its_sha256(store: PackageStore) -> None:
    data = make_zip({"app.py": "def handler(e, c):\n    return 1\n"})
    package = store.put(data)
    assert package.sha256 == hashlib.sha256(data).hexdigest()
    assert package.size == len(data)
    assert package.unzipped_size == len("def handler(e, c):\n    return 1\n")
    assert store.zip_path(package.sha256).read_bytes() == data


def test_put_is_idempotent(store: PackageStore) -> None:
    data = make_zip({"app.py": "x = 1\n"})
    first = store.put(data)
    before = files_under(store.zips)
    assert store.put(data) == first
    assert files_under(store.zips) == before == [f"{first.sha256}.zip"]


def test_check_writes_nothing(store: PackageStore, tmp_path: Path) -> None:
    before = files_under(tmp_path)
    store.check(make_zip({"app.py": "x = 1\n"}))
    assert files_under(tmp_path) == before


# -- refusing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"not a zip", b"PK\x03\x04garbage", b"PK\x05\x06" + b"\0" * 10]
)
def test_not_a_zip_is_refused(store: PackageStore, data: bytes) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        store.put(data)
    assert caught.value.message == UNZIP_ERROR
    assert files_under(store.zips) == []


@pytest.mark.parametrize(
    "name",
    ["../evil.py", "lib/../../evil.py", "/abs.py", "/etc/cron.d/evil", "a\\..\\..\\evil.py", "../"],
)
def test_entries_outside_the_package_are_refused_before_anything_is_written(
    store: PackageStore, tmp_path: Path, name: str
) -> None:
    before = files_under(tmp_path)
    with pytest.raises(InvalidParameterValue):
        store.put(zip_with([("app.py", "x = 1\n"), (name, "evil\n")]))
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    "target", ["../../../../../../etc/passwd", "/etc/passwd", "../../outside", "../.."]
)
def test_symlinks_out_of_the_package_are_refused(
    store: PackageStore, tmp_path: Path, target: str
) -> None:
    package = store.put(zip_with([("app.py", "x = 1\n"), (symlink("lib/link"), target)]))
    with pytest.raises(InvalidParameterValue) as caught:
        store.unpack(package.sha256, RUNTIME, None)
    assert "outside the package" in caught.value.message
    assert not store.task_dir(package.sha256, RUNTIME).exists()
    assert files_under(store.tasks) == []  # the staging directory is gone too


def test_links_that_lead_out_through_other_links_are_refused(
    store: PackageStore, tmp_path: Path
) -> None:
    # Each target is inside on its own (lexically), but p resolves to the package root, so
    # s = p/../../.. resolves two levels above it.
    package = store.put(
        zip_with(
            [
                ("app.py", "x = 1\n"),
                (symlink("deep/er/p"), "../.."),
                (symlink("deep/er/s"), "p/../../.."),
            ]
        )
    )
    with pytest.raises(InvalidParameterValue) as caught:
        store.unpack(package.sha256, RUNTIME, None)
    assert "outside the package" in caught.value.message
    assert files_under(store.tasks) == []


def test_nothing_is_written_through_a_link(store: PackageStore, tmp_path: Path) -> None:
    package = store.put(
        zip_with(
            [
                (symlink("deep/er/p"), "../.."),
                (symlink("deep/er/s"), "p/../../.."),
                ("deep/er/s/escaped.txt", "outside\n"),
            ]
        )
    )
    with pytest.raises(InvalidParameterValue):
        store.unpack(package.sha256, RUNTIME, None)
    assert list(tmp_path.rglob("escaped.txt")) == []
    assert files_under(store.tasks) == []


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_a_file_entry_cannot_replace_a_link(store: PackageStore, tmp_path: Path) -> None:
    # The same name twice: first a link (inside), then a file; writing must not follow the link.
    package = store.put(
        zip_with([("app.py", "x = 1\n"), (symlink("alias.py"), "app.py"), ("alias.py", "y = 2\n")])
    )
    with pytest.raises(InvalidParameterValue):
        store.unpack(package.sha256, RUNTIME, None)
    assert files_under(store.tasks) == []


def test_symlinks_inside_the_package_are_kept(store: PackageStore) -> None:
    package = store.put(
        zip_with([("app.py", "x = 1\n"), (symlink("lib/app_link.py"), "../app.py")])
    )
    task = store.unpack(package.sha256, RUNTIME, None)
    link = task / "lib" / "app_link.py"
    assert link.is_symlink()
    assert os.readlink(link) == "../app.py"
    assert link.resolve() == (task / "app.py").resolve()


def test_declared_unzipped_size_over_the_limit_is_refused(
    store: PackageStore, tmp_path: Path
) -> None:
    limited = small_store(tmp_path, unzipped_bytes=1000)
    with pytest.raises(InvalidParameterValue) as caught:
        limited.put(make_zip({"a.txt": "a" * 600, "b.txt": "b" * 600}))
    assert caught.value.message == "Unzipped size must be smaller than 1000 bytes"
    assert files_under(limited.zips) == []
    # At the limit is fine.
    limited.put(make_zip({"a.txt": "a" * 500, "b.txt": "b" * 500}))


def test_zip_bomb_is_refused_without_unpacking(store: PackageStore, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as entry,
    ):
        for _ in range(260):
            entry.write(chunk)
    before = files_under(tmp_path)
    with pytest.raises(InvalidParameterValue) as caught:
        store.put(buffer.getvalue())
    assert caught.value.message.startswith("Unzipped size must be smaller than")
    assert files_under(tmp_path) == before


def lying_zip(actual: int, declared: int) -> bytes:
    """A zip whose one entry inflates to `actual` bytes while its headers claim `declared`."""
    data = zip_with([("bomb.bin", bytes(actual))])
    local_at = data.index(b"PK\x03\x04")
    central_at = data.index(b"PK\x01\x02")
    patched = bytearray(data)
    struct.pack_into("<I", patched, local_at + 22, declared)  # local header: uncompressed size
    struct.pack_into(
        "<I", patched, central_at + 24, declared
    )  # central directory: uncompressed size
    return bytes(patched)


def test_zip_that_lies_about_its_size_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = small_store(tmp_path, unzipped_bytes=64 * 1024)
    data = lying_zip(actual=8 * 1024 * 1024, declared=100)
    package = store.put(data)  # the declared sizes pass the cheap check
    assert package.unzipped_size == 100
    with pytest.raises(InvalidParameterValue):
        store.unpack(package.sha256, RUNTIME, None)
    assert not store.task_dir(package.sha256, RUNTIME).exists()
    assert files_under(store.tasks) == []


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    store = small_store(tmp_path, zip_max_entries=3)
    store.put(make_zip({f"m{i}.py": "" for i in range(3)}))
    with pytest.raises(InvalidParameterValue):
        store.put(make_zip({f"m{i}.py": "" for i in range(4)}))


def test_zip_over_the_upload_limit_is_refused(tmp_path: Path) -> None:
    store = small_store(tmp_path, zip_upload_bytes=1024)
    with pytest.raises(RequestEntityTooLarge):
        store.put(make_zip({"data.bin": os.urandom(2048)}))
    assert files_under(store.zips) == []


# -- unpacking ------------------------------------------------------------------------------


def test_unpack_extracts_every_file(store: PackageStore) -> None:
    package = store.put(
        make_zip({"app.py": "x = 1\n", "lib/util.py": "y = 2\n", "data/a.json": "{}"})
    )
    task = store.unpack(package.sha256, RUNTIME, None)
    assert task == store.task_dir(package.sha256, RUNTIME)
    assert (task / "app.py").read_text() == "x = 1\n"
    assert (task / "lib" / "util.py").read_text() == "y = 2\n"
    assert (task / "data" / "a.json").read_text() == "{}"


def test_unpack_is_idempotent(store: PackageStore) -> None:
    package = store.put(make_zip({"app.py": "x = 1\n"}))
    first = store.unpack(package.sha256, RUNTIME, sys.executable)
    listing = files_under(first)
    inode = (first / "app.py").stat().st_ino
    second = store.unpack(package.sha256, RUNTIME, sys.executable)
    assert second == first
    assert files_under(second) == listing
    assert (second / "app.py").stat().st_ino == inode  # not extracted again
    assert [p.name for p in store.tasks.iterdir()] == [first.name]


def test_unpack_per_runtime_is_separate(store: PackageStore) -> None:
    package = store.put(make_zip({"app.py": "x = 1\n"}))
    a = store.unpack(package.sha256, "python3.11", None)
    b = store.unpack(package.sha256, "python3.12", None)
    assert a != b
    assert (a / "app.py").read_bytes() == (b / "app.py").read_bytes()


def test_unpacked_files_are_0644_or_0755_and_dirs_0755(store: PackageStore) -> None:
    data = zip_with(
        [
            (unix_file("app.py", 0o600), "x = 1\n"),
            (unix_file("bin/tool", 0o700), "#!/bin/sh\necho hi\n"),
            (unix_file("conf/secret.txt", 0o000), "s\n"),
            ("plain.txt", "no unix mode\n"),
        ]
    )
    task = store.unpack(store.put(data).sha256, RUNTIME, None)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(task / "app.py") == 0o644
    assert mode(task / "bin" / "tool") == 0o755
    assert mode(task / "conf" / "secret.txt") == 0o644
    assert mode(task / "plain.txt") == 0o644
    for directory in (task, task / "bin", task / "conf"):
        assert mode(directory) == 0o755


def test_pyc_is_compiled_into_pycache_for_var_task(store: PackageStore) -> None:
    package = store.put(
        make_zip({"app.py": "def handler(e, c):\n    return 1\n", "lib/util.py": "Y = 2\n"})
    )
    task = store.unpack(package.sha256, RUNTIME, sys.executable)
    tag = sys.implementation.cache_tag
    pyc = task / "__pycache__" / f"app.{tag}.pyc"
    assert pyc.exists()
    assert (task / "lib" / "__pycache__" / f"util.{tag}.pyc").exists()
    raw = pyc.read_bytes()
    flags = int.from_bytes(raw[4:8], "little")
    assert (
        flags == 0b01
    )  # hash-based and unchecked: valid on a read-only mount, whatever the mtimes
    code = marshal.loads(raw[16:])
    assert code.co_filename == "/var/task/app.py"  # tracebacks show the sandbox path
    assert stat.S_IMODE(pyc.stat().st_mode) == 0o644


def test_syntax_errors_do_not_stop_the_unpack(store: PackageStore) -> None:
    package = store.put(make_zip({"app.py": "def broken(:\n", "ok.py": "X = 1\n"}))
    task = store.unpack(package.sha256, RUNTIME, sys.executable)
    assert (task / "app.py").exists()
    assert (task / "__pycache__" / f"ok.{sys.implementation.cache_tag}.pyc").exists()


def test_no_interpreter_means_no_pyc(store: PackageStore) -> None:
    task = store.unpack(store.put(make_zip({"app.py": "x = 1\n"})).sha256, RUNTIME, None)
    assert not (task / "__pycache__").exists()
