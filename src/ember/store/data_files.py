"""The data directory's SQLite files: checked before the server opens them, watched while it runs.

At start (`check_at_start`), before anything opens a database:
- a data directory with none of Ember's state is a fresh start: every file is created;
- `ember.sqlite3` missing while other state exists (another database, stored code), or
  `queue.sqlite3` missing while `ember.sqlite3` exists, is an error: state was lost, and going
  on would act on the loss (stored code with no function would be collected; accepted
  asynchronous events would silently never run);
- `logs.sqlite3`, `metrics.sqlite3` and `traces.sqlite3` are history: one that is missing is
  started empty (a warning says so), which is also how an operator reclaims their space;
- a `-wal` or `-shm` file without its database is an error: the WAL holds committed
  transactions of a database that is gone, and SQLite would replay them into a new, empty one;
- every database that exists passes `PRAGMA quick_check` (in parallel, one thread each).
Each error names the file and says what to do.

While running (`DataFileWatch`): the (device, inode) of each database and its `-wal`/`-shm`
file is recorded once they are open. A file deleted or replaced under a running server keeps
receiving writes through the open descriptors, into an inode nothing will ever read again. The
watch is checked every second and right after each commit that acknowledges a durable write
(metadata changes, accepted asynchronous events): a change puts the server into a *fault* in
which every write is refused with a 503 naming the file, until it is restarted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ember.errors import StorageUnavailable

log = logging.getLogger(__name__)

METADATA = "ember.sqlite3"
QUEUE = "queue.sqlite3"
HISTORY = ("logs.sqlite3", "metrics.sqlite3", "traces.sqlite3")  # missing: started empty
DATABASES = (METADATA, QUEUE, *HISTORY)
SIDE_FILES = ("-wal", "-shm")


class DataFileError(Exception):
    """The data directory cannot be used as it is; the message names the file and the remedy."""


@dataclass(frozen=True)
class StartCheck:
    checked: dict[str, float]  # database file name -> seconds its quick_check took
    started_empty: tuple[str, ...]  # history databases that were missing


def check_at_start(data_dir: Path) -> StartCheck:
    """Refuse a data directory whose databases are missing, orphaned or corrupt (DataFileError);
    returns what was checked. Creates nothing."""
    present = {name for name in DATABASES if (data_dir / name).exists()}
    for name in DATABASES:
        for suffix in SIDE_FILES:
            side = data_dir / (name + suffix)
            if name not in present and side.exists():
                raise DataFileError(_orphan_message(data_dir, name, side))
    others = sorted(present - {METADATA})
    code = _stored_code(data_dir)
    if METADATA not in present and (others or code):
        found = ", ".join([*others, *([f"{code} code package(s) in code/zips"] if code else [])])
        raise DataFileError(
            f"{data_dir / METADATA} is missing, but the data directory holds state from an earlier "
            f"run ({found}). Without it the functions, versions and layers that state belongs to "
            f"are unknown. Restore {METADATA} from a backup; or, to start afresh, move the data "
            f"directory {data_dir} away (or empty it) and start again."
        )
    if METADATA in present and QUEUE not in present:
        raise DataFileError(
            f"{data_dir / QUEUE} is missing: it holds the accepted asynchronous invocations, which "
            f"would never run. Restore it from a backup; or, if losing them is acceptable, create "
            f"an empty one (`touch {data_dir / QUEUE}`) and start again."
        )
    started_empty = tuple(name for name in HISTORY if METADATA in present and name not in present)
    for name in started_empty:
        log.warning("%s is missing: it is started empty (its history is gone)", data_dir / name)
    checked: dict[str, float] = {}
    if present:
        names = sorted(present)
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="ember-check") as pool:
            results = dict(
                zip(names, pool.map(lambda n: _quick_check(data_dir / n), names), strict=True)
            )
        for name, (seconds, problem) in results.items():
            if problem is not None:
                raise DataFileError(_corrupt_message(data_dir / name, problem))
            checked[name] = seconds
    return StartCheck(checked, started_empty)


def _stored_code(data_dir: Path) -> int:
    try:
        return sum(
            1 for entry in os.scandir(data_dir / "code" / "zips") if entry.name.endswith(".zip")
        )
    except OSError:
        return 0


def _quick_check(path: Path) -> tuple[float, str | None]:
    """(seconds taken, None or what is wrong). Opens the file read-write without creating it (a
    hot WAL is recovered, as the server's own open would)."""
    started = time.perf_counter()
    try:
        conn = sqlite3.connect(path.as_uri() + "?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return time.perf_counter() - started, f"it cannot be opened: {exc}"
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        return time.perf_counter() - started, str(exc)
    finally:
        conn.close()
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return time.perf_counter() - started, "; ".join(problems[:3]) if problems else None


def _orphan_message(data_dir: Path, name: str, side: Path) -> str:
    if name in HISTORY:
        remedy = (
            f"Restore {name} from a backup; or delete {side.name} (and {name}-wal / {name}-shm) "
            f"and Ember starts {name} empty."
        )
    else:
        remedy = f"Restore {name} from a backup next to it (the WAL completes it) and start again."
    return (
        f"{side} exists but its database {data_dir / name} does not: the WAL holds committed "
        f"changes of a database that is gone, and opening would replay them into a new, empty "
        f"one. {remedy}"
    )


def _corrupt_message(path: Path, problem: str) -> str:
    salvage = (
        f"keep a copy of it, then either restore it from a backup or salvage what is readable "
        f"(`sqlite3 {path} .recover | sqlite3 {path}.recovered`, then move {path.name}.recovered "
        f"to {path.name} and delete {path.name}-wal and {path.name}-shm)"
    )
    if path.name in HISTORY:
        salvage += (
            f"; or move it (with its -wal and -shm files) aside and Ember starts {path.name} empty"
        )
    return f"{path} is damaged (SQLite quick_check: {problem}). Stop here: {salvage}."


# -- while running ------------------------------------------------------------------------------


def _identity(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class DataFileWatch:
    """Notices a database (or its -wal/-shm) deleted or replaced while the server runs; after
    that, `refuse_writes` raises until restart."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[int, int]] = {}
        # database -> the files a commit writes to (itself and its -wal): checked after commits
        self._commits: dict[Path, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self.fault: str | None = None

    def watch(self, database: Path) -> None:
        """Record the identity of `database` and of its -wal/-shm files that exist now (call it
        once the database is open and in WAL mode)."""
        paths = [str(database), *(str(database) + suffix for suffix in SIDE_FILES)]
        with self._lock:
            for path in paths:
                identity = _identity(path)
                if identity is not None:
                    self._files[path] = identity
            self._commits[database] = tuple(p for p in paths[:2] if p in self._files)

    def refuse_writes(self) -> None:
        if self.fault is not None:
            raise StorageUnavailable(self.fault)

    def confirm(self, database: Path) -> None:
        """After a commit to `database`: raise (and enter the fault) if the commit went into a
        file that is no longer the one at its path."""
        self._check(self._commits.get(database, ()))
        self.refuse_writes()

    def check_all(self) -> str | None:
        """Every watched file; returns the fault (None while all is well)."""
        self._check(tuple(self._files))
        return self.fault

    def _check(self, paths: tuple[str, ...]) -> None:
        for path in paths:
            expected = self._files.get(path)
            now = _identity(path)
            if now == expected:
                continue
            what = "deleted" if now is None else "replaced by another file"
            self._enter_fault(
                f"Ember's data file {path} was {what} while the server was running; to never "
                "acknowledge a write into a file that is gone, Ember refuses writes until it is "
                "restarted (at start it checks its files and says what to do)."
            )
            return

    def _enter_fault(self, message: str) -> None:
        with self._lock:
            if self.fault is not None:
                return
            self.fault = message
        log.critical("%s", message)
