"""The embedded Store: stdlib sqlite3 in WAL mode with numbered plain-SQL migrations."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ember.errors import PreconditionFailed, ResourceConflict, ResourceNotFound
from ember.functions.model import LATEST, FunctionRecord


def _migrations(kind: str) -> list[tuple[int, str]]:
    folder = resources.files("ember.store") / "migrations" / kind
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN), WAL, NORMAL sync."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def migrate(c: sqlite3.Connection, kind: str) -> None:
    """Apply the numbered migrations of `migrations/<kind>/` not yet recorded (in a transaction)."""
    c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for number, sql in _migrations(kind):
        if number > current:
            for statement in sql.split(";\n"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))


class SqliteStore:
    """One connection shared by the server's threads, serialized by a lock.

    Reads and metadata writes take microseconds, so the event loop calls them directly.
    """

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as c:
            migrate(c, "sqlite")

    # -- functions ---------------------------------------------------------------------------

    def get_function(self, name: str, version: str = LATEST) -> FunctionRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT config FROM functions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        return FunctionRecord.from_json(orjson.loads(row[0])) if row else None

    def create_function(self, record: FunctionRecord) -> None:
        with self._tx() as c:
            exists = c.execute("SELECT 1 FROM functions WHERE name = ?", (record.name,)).fetchone()
            if exists:
                raise ResourceConflict(f"Function already exist: {record.name}")
            self._insert(c, record)

    def update_function(self, record: FunctionRecord, expected_revision: str | None) -> None:
        with self._tx() as c:
            row = c.execute(
                "SELECT revision_id FROM functions WHERE name = ? AND version = ?",
                (record.name, record.version),
            ).fetchone()
            if row is None:
                raise ResourceNotFound(f"Function not found: {record.name}")
            if expected_revision is not None and row[0] != expected_revision:
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
                )
            c.execute(
                "UPDATE functions SET revision_id = ?, code_sha256 = ?, code_size = ?, config = ?"
                " WHERE name = ? AND version = ?",
                (
                    record.revision_id,
                    record.code_sha256,
                    record.code_size,
                    orjson.dumps(record.to_json()).decode(),
                    record.name,
                    record.version,
                ),
            )

    @staticmethod
    def _insert(c: sqlite3.Connection, record: FunctionRecord) -> None:
        c.execute(
            "INSERT INTO functions (name, version, revision_id, code_sha256, code_size, config)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.name,
                record.version,
                record.revision_id,
                record.code_sha256,
                record.code_size,
                orjson.dumps(record.to_json()).decode(),
            ),
        )

    def delete_function(self, name: str) -> bool:
        with self._tx() as c:
            cur = c.execute("DELETE FROM functions WHERE name = ?", (name,))
            c.execute("DELETE FROM event_invoke_configs WHERE function = ?", (name,))
            return cur.rowcount > 0

    def list_functions(self, after: str | None, limit: int) -> list[FunctionRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT config FROM functions WHERE version = ? AND name > ? ORDER BY name LIMIT ?",
                (LATEST, after or "", limit),
            ).fetchall()
        return [FunctionRecord.from_json(orjson.loads(r[0])) for r in rows]

    # -- code packages -----------------------------------------------------------------------

    def add_code_package(self, sha256: str, size: int, unzipped: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO code_packages (sha256, size, unzipped, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sha256) DO NOTHING",
                (sha256, size, unzipped, time.time()),
            )

    def code_usage(self) -> tuple[int, int]:
        with self._lock:
            count = self._conn.execute(
                "SELECT COUNT(*) FROM functions WHERE version = ?", (LATEST,)
            ).fetchone()[0]
            total = self._conn.execute(
                "SELECT COALESCE(SUM(p.size), 0) FROM code_packages p"
                " WHERE p.sha256 IN (SELECT code_sha256 FROM functions)"
            ).fetchone()[0]
        return int(count), int(total)

    # -- asynchronous invocation configs -----------------------------------------------------

    def put_event_config(self, function: str, qualifier: str, config: dict[str, Any], now: float) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO event_invoke_configs (function, qualifier, config, last_modified)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) DO UPDATE SET"
                " config = excluded.config, last_modified = excluded.last_modified",
                (function, qualifier, orjson.dumps(config).decode(), now),
            )

    def get_event_config(self, function: str, qualifier: str) -> tuple[dict[str, Any], float] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT config, last_modified FROM event_invoke_configs"
                " WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            ).fetchone()
        return (orjson.loads(row[0]), float(row[1])) if row else None

    def delete_event_config(self, function: str, qualifier: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            )
            return cur.rowcount > 0

    def list_event_configs(self, function: str) -> list[tuple[str, dict[str, Any], float]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT qualifier, config, last_modified FROM event_invoke_configs"
                " WHERE function = ? ORDER BY qualifier",
                (function,),
            ).fetchall()
        return [(r[0], orjson.loads(r[1]), float(r[2])) for r in rows]
