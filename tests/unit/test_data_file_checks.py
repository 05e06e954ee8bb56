"""The data directory's databases: refused at start when missing, orphaned or corrupt; a file
deleted or replaced while open puts the watch into a fault that refuses writes."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ember.errors import StorageUnavailable
from ember.functions.model import FunctionRecord
from ember.store.data_files import DATABASES, DataFileError, DataFileWatch, check_at_start
from ember.store.sqlite import SqliteStore, connect


def populate(data_dir: Path) -> None:
    """Every database, as a server leaves them (WAL mode, some rows)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in DATABASES:
        conn = connect(data_dir / name)
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.close()


def test_an_empty_data_dir_is_a_fresh_start(tmp_path: Path) -> None:
    assert check_at_start(tmp_path).checked == {}
    assert list(tmp_path.iterdir()) == []  # creates nothing


def test_every_database_is_quick_checked(tmp_path: Path) -> None:
    populate(tmp_path)
    assert set(check_at_start(tmp_path).checked) == set(DATABASES)


@pytest.mark.parametrize("name", DATABASES)
def test_a_corrupt_database_is_named_with_what_to_do(tmp_path: Path, name: str) -> None:
    populate(tmp_path)
    with open(tmp_path / name, "r+b") as f:
        f.write(b"this is not an SQLite header" * 4)
    with pytest.raises(DataFileError) as caught:
        check_at_start(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / name) in message and "damaged" in message and ".recover" in message


def test_a_damaged_page_is_found(tmp_path: Path) -> None:
    populate(tmp_path)
    conn = sqlite3.connect(tmp_path / "logs.sqlite3")
    conn.execute("CREATE TABLE big (x)")
    conn.executemany("INSERT INTO big VALUES (?)", [("y" * 500,) for _ in range(2000)])
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(tmp_path / "logs.sqlite3", "r+b") as f:
        f.seek(4096 * 5)
        f.write(os.urandom(4096))  # a b-tree page of garbage
    with pytest.raises(DataFileError, match=r"logs.sqlite3 is damaged.*starts logs.sqlite3 empty"):
        check_at_start(tmp_path)


def test_metadata_missing_beside_other_state_is_refused(tmp_path: Path) -> None:
    populate(tmp_path)
    (tmp_path / "ember.sqlite3").unlink()
    with pytest.raises(DataFileError, match=r"ember.sqlite3 is missing.*queue.sqlite3"):
        check_at_start(tmp_path)


def test_stored_code_alone_also_needs_its_metadata(tmp_path: Path) -> None:
    (tmp_path / "code" / "zips").mkdir(parents=True)
    (tmp_path / "code" / "zips" / "abc.zip").write_bytes(b"PK")
    with pytest.raises(DataFileError, match="1 code package"):
        check_at_start(tmp_path)


def test_a_missing_queue_is_refused_until_an_empty_one_is_made(tmp_path: Path) -> None:
    populate(tmp_path)
    (tmp_path / "queue.sqlite3").unlink()
    with pytest.raises(DataFileError, match="touch"):
        check_at_start(tmp_path)
    (tmp_path / "queue.sqlite3").touch()
    check_at_start(tmp_path)


@pytest.mark.parametrize("name", ["logs.sqlite3", "metrics.sqlite3", "traces.sqlite3"])
def test_missing_history_starts_empty(tmp_path: Path, name: str) -> None:
    populate(tmp_path)
    (tmp_path / name).unlink()
    assert check_at_start(tmp_path).started_empty == (name,)


@pytest.mark.parametrize("name", DATABASES)
def test_a_wal_without_its_database_is_refused(tmp_path: Path, name: str) -> None:
    populate(tmp_path)
    holder = connect(tmp_path / name)  # keeps the -wal while the database is removed
    holder.execute("INSERT INTO t VALUES (2)")
    shutil.copy(tmp_path / f"{name}-wal", tmp_path / "kept-wal")
    holder.close()
    (tmp_path / name).unlink()
    shutil.copy(tmp_path / "kept-wal", tmp_path / f"{name}-wal")
    with pytest.raises(DataFileError, match=f"{name}-wal exists but its database"):
        check_at_start(tmp_path)


# -- while running ------------------------------------------------------------------------------


def record(name: str) -> FunctionRecord:
    return FunctionRecord(
        name=name,
        version="$LATEST",
        runtime="python3.11",
        role="r",
        handler="a.b",
        code_sha256="0" * 64,
        code_size=1,
        revision_id=name,
    )


@pytest.mark.parametrize("how", ["delete", "replace", "delete-wal"])
def test_a_write_into_a_file_that_is_gone_is_never_acknowledged(tmp_path: Path, how: str) -> None:
    watch = DataFileWatch()
    path = tmp_path / "ember.sqlite3"
    store = SqliteStore(path, watch)
    watch.watch(path)
    store.create_function(record("before"))
    if how == "delete":
        path.unlink()
    elif how == "replace":
        shutil.copy(path, tmp_path / "copy")
        os.replace(tmp_path / "copy", path)
    else:
        Path(f"{path}-wal").unlink()
    with pytest.raises(StorageUnavailable, match=r"ember.sqlite3.*while the server was running"):
        store.create_function(record("after"))  # committed into the lost file: an error
    assert watch.fault is not None
    with pytest.raises(StorageUnavailable):
        store.create_function(record("later"))  # refused before it starts
    assert store.get_function("before") is not None  # reads go on
    store.close()


def test_the_periodic_check_sees_what_no_write_touched(tmp_path: Path) -> None:
    watch = DataFileWatch()
    populate(tmp_path)
    conns = [connect(tmp_path / name) for name in DATABASES]
    for name in DATABASES:
        watch.watch(tmp_path / name)
    assert watch.check_all() is None
    (tmp_path / "metrics.sqlite3").unlink()
    fault = watch.check_all()
    assert fault is not None and "metrics.sqlite3 was deleted" in fault
    for conn in conns:
        conn.close()
