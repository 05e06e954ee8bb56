"""The entry count of an upload is known before zipfile builds its central directory."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from conftest import make_zip
from ember.errors import InvalidParameterValue
from ember.functions.packages import UNZIP_ERROR, PackageStore
from ember.functions.zip_directory import MalformedZip, TooManyEntries, check_entry_count
from ember.settings import Limits
from zips import many_entry_zip


def test_zipfile_reads_the_hand_built_zips() -> None:
    data = many_entry_zip(70_000)  # past 0xFFFF: ZIP64 end records
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 70_000
    check_entry_count(data, 70_000)
    with pytest.raises(TooManyEntries):
        check_entry_count(data, 69_999)


def test_a_million_entries_are_refused_in_a_few_kilobytes(tmp_path: Path) -> None:
    data = many_entry_zip(1_000_000)
    assert len(data) < Limits().zip_upload_bytes  # it is a legal upload
    store = PackageStore(tmp_path / "code", Limits())
    tracemalloc.start()
    try:
        with pytest.raises(InvalidParameterValue, match="more than 100000 entries"):
            store.check(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"checking allocated {peak} bytes"  # zipfile: ~300 MB


def test_a_directory_that_lies_about_its_count_is_walked(tmp_path: Path) -> None:
    """The end record says 1 entry; zipfile would still build all 200,000 (it walks by size)."""
    data = many_entry_zip(200_000, declared=1)
    store = PackageStore(tmp_path / "code", Limits())
    tracemalloc.start()
    try:
        with pytest.raises(InvalidParameterValue, match="more than 100000 entries"):
            store.check(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_signatures_inside_stored_files_do_not_count() -> None:
    """A nested, uncompressed zip carries its own directory records: the upload has more
    signatures than the limit, yet only two entries."""
    inner = many_entry_zip(50)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("inner.zip", inner)
        archive.writestr("app.py", "x = 1\n")
    check_entry_count(buffer.getvalue(), 10)


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x05\x06" + b"\0" * 18,  # an empty zip
        make_zip({"a.py": "1"}) + b"trailing comment? no: garbage without a length",
    ],
)
def test_what_zipfile_accepts_is_accepted_or_refused_alike(data: bytes) -> None:
    try:
        zipfile.ZipFile(io.BytesIO(data)).infolist()
        readable = True
    except zipfile.BadZipFile:
        readable = False
    try:
        check_entry_count(data, 10)
        counted = True
    except MalformedZip:
        counted = False
    assert counted == readable


def test_a_directory_outside_the_upload_is_malformed(tmp_path: Path) -> None:
    data = bytearray(make_zip({"a.py": "1"}))
    data[-10:-6] = (10**8).to_bytes(4, "little")  # directory size: bigger than the upload
    with pytest.raises(MalformedZip):
        check_entry_count(bytes(data), 10)
    with pytest.raises(InvalidParameterValue) as caught:
        PackageStore(tmp_path / "code", Limits()).check(bytes(data))
    assert caught.value.message == UNZIP_ERROR
