"""The embedded Store: stdlib sqlite3 in WAL mode with numbered plain-SQL migrations."""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ember.errors import DiskFull, PreconditionFailed, ResourceConflict, ResourceNotFound
from ember.functions.access_keys import AccessKey
from ember.functions.layers import LayerVersion
from ember.functions.model import LATEST, Alias, FunctionRecord, ProvisionedConfig
from ember.store.data_files import DataFileWatch
from ember.store.reserve import SpaceReserve

T = TypeVar("T")

# Sorts $LATEST before published versions, and those by number.
_VERSION_ORDER = "(CASE WHEN version = '$LATEST' THEN -1 ELSE CAST(version AS INTEGER) END)"


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


@contextmanager
def transaction(
    conn: sqlite3.Connection, lock: AbstractContextManager[Any]
) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT under `lock`, rolled back on any error."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may leave the transaction open: left so, every later
            # BEGIN on this connection would fail, long after the disk has room again.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether a write failed because the disk is full (SQLite's SQLITE_FULL, or ENOSPC/EDQUOT)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(
            exc
        )
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: Path) -> DiskFull:
    """The error for a write to `path` that found the disk full: it says which disk and what helps."""
    try:
        st = os.statvfs(path.parent)
        free = f"{st.f_bavail * st.f_frsize // 1024} KiB and {st.f_favail} inodes free"
    except OSError:
        free = "free space unknown"
    return DiskFull(
        f"Ember's disk is full: {path} could not be written (no space left on the device holding "
        f"{path.parent}; {free}). Free disk space, or delete functions, versions or layers that are "
        "no longer needed (their code is reclaimed), then retry."
    )


@dataclass
class CodeReferences:
    """What stored code is in use: zips by sha256, unpacked trees by directory name."""

    zips: set[str] = field(default_factory=set)
    task_trees: set[tuple[str, str]] = field(default_factory=set)  # (code sha256, runtime)
    layer_trees: set[tuple[tuple[str, ...], str]] = field(
        default_factory=set
    )  # (layer shas, runtime)


def migrate(c: sqlite3.Connection, kind: str) -> None:
    """Apply the numbered migrations of `migrations/<kind>/` not yet recorded (in a transaction).

    Every number not applied yet runs, in order, even one below the highest applied."""
    c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    applied = {row[0] for row in c.execute("SELECT version FROM schema_version")}
    for number, sql in _migrations(kind):
        if number not in applied:
            for statement in sql.split(";\n"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))


class SqliteStore:
    """One connection shared by the server's threads, serialized by a lock.

    Reads and metadata writes take microseconds, so the event loop calls them directly.
    """

    def __init__(
        self, path: Path, watch: DataFileWatch | None = None, reserve: SpaceReserve | None = None
    ) -> None:
        self._path = path
        self._conn = connect(path)
        self._lock = threading.RLock()
        self._watch = watch
        self._reserve = reserve
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: refused while the data files are in a fault; a full disk is a
        DiskFull naming it; after the commit the file is confirmed to be still the one at its
        path (else the write is reported as failed, never acknowledged)."""
        if self._watch is not None:
            self._watch.refuse_writes()
        try:
            with transaction(self._conn, self._lock) as c:
                yield c
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise disk_full_error(self._path) from exc
            raise
        if self._watch is not None:
            self._watch.confirm(self._path)

    def _freeing(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A write that frees space (a delete): when the disk is full, the space reserve is
        released and it runs once more, so deleting works on a full disk."""
        try:
            with self._tx() as c:
                return work(c)
        except DiskFull:
            if self._reserve is None or not self._reserve.release():
                raise
        with self._tx() as c:
            return work(c)

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
        def work(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM functions WHERE name = ?", (name,))
            c.execute("DELETE FROM event_invoke_configs WHERE function = ?", (name,))
            for table in (
                "version_counters",
                "aliases",
                "reserved_concurrency",
                "provisioned_concurrency",
                "function_policies",
                "function_tags",
                "function_urls",
            ):
                c.execute(f"DELETE FROM {table} WHERE function = ?", (name,))
            return cur.rowcount > 0

        return self._freeing(work)

    def list_functions(self, after: str | None, limit: int) -> list[FunctionRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT config FROM functions WHERE version = ? AND name > ? ORDER BY name LIMIT ?",
                (LATEST, after or "", limit),
            ).fetchall()
        return [FunctionRecord.from_json(orjson.loads(r[0])) for r in rows]

    # -- versions ----------------------------------------------------------------------------

    def publish_version(
        self,
        latest: FunctionRecord,
        expected_revision: str | None,
        make: Callable[[FunctionRecord, str], FunctionRecord],
    ) -> FunctionRecord:
        """Snapshot `latest` as the next version number (`make` builds the version's record);
        refused with PreconditionFailed when $LATEST's revision is not `expected_revision`."""
        with self._tx() as c:
            row = c.execute(
                "SELECT revision_id FROM functions WHERE name = ? AND version = ?",
                (latest.name, LATEST),
            ).fetchone()
            if row is None:
                raise ResourceNotFound(f"Function not found: {latest.name}")
            if row[0] != (expected_revision or latest.revision_id):
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
                )
            found = c.execute(
                "SELECT last FROM version_counters WHERE function = ?", (latest.name,)
            ).fetchone()
            number = (found[0] if found else 0) + 1
            c.execute(
                "INSERT INTO version_counters (function, last) VALUES (?, ?)"
                " ON CONFLICT (function) DO UPDATE SET last = excluded.last",
                (latest.name, number),
            )
            record = make(latest, str(number))
            self._insert(c, record)
            return record

    def last_version(self, name: str) -> FunctionRecord | None:
        """The most recently published version still stored."""
        with self._lock:
            row = self._conn.execute(
                "SELECT config FROM functions WHERE name = ? AND version != ?"
                " ORDER BY CAST(version AS INTEGER) DESC LIMIT 1",
                (name, LATEST),
            ).fetchone()
        return FunctionRecord.from_json(orjson.loads(row[0])) if row else None

    def list_versions(self, name: str, after: int, limit: int) -> list[FunctionRecord]:
        """$LATEST (order -1) then published versions in order, those ordered after `after`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT config FROM functions WHERE name = ? AND"
                f" {_VERSION_ORDER} > ? ORDER BY {_VERSION_ORDER} LIMIT ?",
                (name, after, limit),
            ).fetchall()
        return [FunctionRecord.from_json(orjson.loads(r[0])) for r in rows]

    def list_all_versions(self, after: tuple[str, int] | None, limit: int) -> list[FunctionRecord]:
        """Every version of every function, by name then version, after (name, version order)."""
        name, order = after or ("", -2)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT config FROM functions WHERE (name, {_VERSION_ORDER}) > (?, ?)"
                f" ORDER BY name, {_VERSION_ORDER} LIMIT ?",
                (name, order, limit),
            ).fetchall()
        return [FunctionRecord.from_json(orjson.loads(r[0])) for r in rows]

    def delete_version(self, name: str, version: str) -> bool:
        """Delete one published version; ResourceConflict while an alias routes to it."""

        def work(c: sqlite3.Connection) -> bool:
            users = [
                alias
                for alias, primary, weights in c.execute(
                    "SELECT name, version, weights FROM aliases WHERE function = ? ORDER BY name",
                    (name,),
                ).fetchall()
                if primary == version or version in orjson.loads(weights)
            ]
            if users:
                raise ResourceConflict(
                    f"Unable to delete version because the following aliases reference it: [{', '.join(users)}]"
                )
            cur = c.execute("DELETE FROM functions WHERE name = ? AND version = ?", (name, version))
            c.execute(
                "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
                (name, version),
            )
            c.execute(
                "DELETE FROM provisioned_concurrency WHERE function = ? AND qualifier = ?",
                (name, version),
            )
            return cur.rowcount > 0

        return self._freeing(work)

    # -- aliases -----------------------------------------------------------------------------

    def get_alias(self, function: str, name: str) -> Alias | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT version, description, weights, revision_id FROM aliases WHERE function = ? AND name = ?",
                (function, name),
            ).fetchone()
        return Alias(function, name, row[0], row[1], orjson.loads(row[2]), row[3]) if row else None

    def list_aliases(self, function: str) -> list[Alias]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, version, description, weights, revision_id FROM aliases"
                " WHERE function = ? ORDER BY name",
                (function,),
            ).fetchall()
        return [Alias(function, r[0], r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows]

    def put_alias(self, alias: Alias, create: bool, expected_revision: str | None) -> None:
        """Create (ResourceConflict when it exists) or replace (PreconditionFailed on a stale
        revision) an alias; the versions it names must exist (ResourceNotFound)."""
        with self._tx() as c:
            for version in (alias.version, *alias.weights):
                found = c.execute(
                    "SELECT 1 FROM functions WHERE name = ? AND version = ?",
                    (alias.function, version),
                ).fetchone()
                if found is None:
                    raise ResourceNotFound(f"Function not found: {alias.function}:{version}")
            row = c.execute(
                "SELECT revision_id FROM aliases WHERE function = ? AND name = ?",
                (alias.function, alias.name),
            ).fetchone()
            if create and row is not None:
                raise ResourceConflict(f"Alias already exists: {alias.function}:{alias.name}")
            if not create:
                if row is None:
                    raise ResourceNotFound(f"Cannot find alias: {alias.function}:{alias.name}")
                if expected_revision is not None and row[0] != expected_revision:
                    raise PreconditionFailed(
                        "The Revision Id provided does not match the latest Revision Id. "
                        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
                    )
            c.execute(
                "INSERT INTO aliases (function, name, version, description, weights, revision_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (function, name) DO UPDATE SET"
                " version = excluded.version, description = excluded.description,"
                " weights = excluded.weights, revision_id = excluded.revision_id",
                (
                    alias.function,
                    alias.name,
                    alias.version,
                    alias.description,
                    orjson.dumps(alias.weights).decode(),
                    alias.revision_id,
                ),
            )

    def delete_alias(self, function: str, name: str) -> bool:
        with self._tx() as c:
            cur = c.execute("DELETE FROM aliases WHERE function = ? AND name = ?", (function, name))
            c.execute(
                "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
                (function, name),
            )
            c.execute(
                "DELETE FROM provisioned_concurrency WHERE function = ? AND qualifier = ?",
                (function, name),
            )
            return cur.rowcount > 0

    # -- concurrency -------------------------------------------------------------------------

    def put_reserved_concurrency(self, function: str, reserved: int | None) -> None:
        """Set (or with None, remove) a function's reserved concurrency."""
        with self._tx() as c:
            if reserved is None:
                c.execute("DELETE FROM reserved_concurrency WHERE function = ?", (function,))
            else:
                c.execute(
                    "INSERT INTO reserved_concurrency (function, reserved) VALUES (?, ?)"
                    " ON CONFLICT (function) DO UPDATE SET reserved = excluded.reserved",
                    (function, reserved),
                )

    def reserved_concurrency(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT function, reserved FROM reserved_concurrency"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def put_provisioned(self, config: ProvisionedConfig) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO provisioned_concurrency (function, qualifier, requested, last_modified)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) DO UPDATE SET"
                " requested = excluded.requested, last_modified = excluded.last_modified",
                (config.function, config.qualifier, config.requested, config.last_modified),
            )

    def delete_provisioned(self, function: str, qualifier: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM provisioned_concurrency WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            )
            return cur.rowcount > 0

    def list_provisioned(self, function: str | None = None) -> list[ProvisionedConfig]:
        """One function's provisioned concurrency configs (every function's without one)."""
        query = "SELECT function, qualifier, requested, last_modified FROM provisioned_concurrency"
        with self._lock:
            if function is None:
                rows = self._conn.execute(query + " ORDER BY function, qualifier").fetchall()
            else:
                rows = self._conn.execute(
                    query + " WHERE function = ? ORDER BY qualifier", (function,)
                ).fetchall()
        return [ProvisionedConfig(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    # -- code packages -----------------------------------------------------------------------

    def add_code_package(self, sha256: str, size: int, unzipped: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO code_packages (sha256, size, unzipped, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sha256) DO NOTHING",
                (sha256, size, unzipped, time.time()),
            )

    def code_references(self) -> CodeReferences:
        """Every zip and unpacked tree a function version or layer version uses (a function's
        layers count even when their layer version was deleted: it keeps working)."""
        refs = CodeReferences()
        with self._lock:
            functions = self._conn.execute("SELECT config FROM functions").fetchall()
            layers = self._conn.execute("SELECT config FROM layer_versions").fetchall()
        for (config,) in functions:
            data = orjson.loads(config)
            runtime = str(data.get("runtime", ""))
            refs.zips.add(str(data["code_sha256"]))
            refs.task_trees.add((str(data["code_sha256"]), runtime))
            shas = tuple(str(layer["sha256"]) for layer in data.get("layers") or ())
            if shas:
                refs.zips.update(shas)
                refs.layer_trees.add((shas, runtime))
        for (config,) in layers:
            refs.zips.add(str(orjson.loads(config)["sha256"]))
        return refs

    def forget_code_packages(self, shas: list[str]) -> None:
        """Drop the rows of packages whose zips were collected."""
        if shas:
            self._freeing(
                lambda c: c.executemany(
                    "DELETE FROM code_packages WHERE sha256 = ?", [(s,) for s in shas]
                )
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

    def put_event_config(
        self, function: str, qualifier: str, config: dict[str, Any], now: float
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO event_invoke_configs (function, qualifier, config, last_modified)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) DO UPDATE SET"
                " config = excluded.config, last_modified = excluded.last_modified",
                (function, qualifier, orjson.dumps(config).decode(), now),
            )

    def get_event_config(
        self, function: str, qualifier: str
    ) -> tuple[dict[str, Any], float] | None:
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

    # -- resource policies -------------------------------------------------------------------

    def get_policy(self, function: str, qualifier: str) -> tuple[list[dict[str, Any]], str] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT statements, revision_id FROM function_policies WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            ).fetchone()
        return (orjson.loads(row[0]), str(row[1])) if row else None

    def put_policy(
        self, function: str, qualifier: str, statements: list[dict[str, Any]], revision_id: str
    ) -> None:
        with self._tx() as c:
            if not statements:
                c.execute(
                    "DELETE FROM function_policies WHERE function = ? AND qualifier = ?",
                    (function, qualifier),
                )
                return
            c.execute(
                "INSERT INTO function_policies (function, qualifier, revision_id, statements)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) DO UPDATE SET"
                " revision_id = excluded.revision_id, statements = excluded.statements",
                (function, qualifier, revision_id, orjson.dumps(statements).decode()),
            )

    # -- tags --------------------------------------------------------------------------------

    def get_tags(self, function: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM function_tags WHERE function = ? ORDER BY key", (function,)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def tag(self, function: str, tags: dict[str, str]) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT INTO function_tags (function, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (function, key) DO UPDATE SET value = excluded.value",
                [(function, k, v) for k, v in tags.items()],
            )

    def untag(self, function: str, keys: list[str]) -> None:
        with self._tx() as c:
            c.executemany(
                "DELETE FROM function_tags WHERE function = ? AND key = ?",
                [(function, k) for k in keys],
            )

    # -- function URLs -----------------------------------------------------------------------

    _URL_COLUMNS = "url_id, function, qualifier, config, created, last_modified"

    @staticmethod
    def _url_row(row: Any) -> tuple[str, str, str, dict[str, Any], float, float]:
        return (
            str(row[0]),
            str(row[1]),
            str(row[2]),
            orjson.loads(row[3]),
            float(row[4]),
            float(row[5]),
        )

    def put_function_url(self, url: tuple[str, str, str, dict[str, Any], float, float]) -> None:
        url_id, function, qualifier, config, created, modified = url
        with self._tx() as c:
            other = c.execute(
                "SELECT url_id FROM function_urls WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            ).fetchone()
            if other is not None and other[0] != url_id:
                raise ResourceConflict(
                    f"A function URL already exists for {function} ({qualifier or '$LATEST'})"
                )
            c.execute(
                f"INSERT INTO function_urls ({self._URL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (url_id) DO UPDATE SET config = excluded.config,"
                " last_modified = excluded.last_modified",
                (url_id, function, qualifier, orjson.dumps(config).decode(), created, modified),
            )

    def get_function_url(
        self, url_id: str
    ) -> tuple[str, str, str, dict[str, Any], float, float] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {self._URL_COLUMNS} FROM function_urls WHERE url_id = ?", (url_id,)
            ).fetchone()
        return self._url_row(row) if row else None

    def find_function_urls(
        self, function: str, qualifier: str | None = None
    ) -> list[tuple[str, str, str, dict[str, Any], float, float]]:
        query = f"SELECT {self._URL_COLUMNS} FROM function_urls WHERE function = ?"
        args: tuple[str, ...] = (function,)
        if qualifier is not None:
            query += " AND qualifier = ?"
            args = (function, qualifier)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY qualifier", args).fetchall()
        return [self._url_row(r) for r in rows]

    def delete_function_url(self, function: str, qualifier: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM function_urls WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            )
            return cur.rowcount > 0

    # -- layers ------------------------------------------------------------------------------

    def publish_layer_version(self, layer: LayerVersion) -> LayerVersion:
        with self._tx() as c:
            row = c.execute(
                "INSERT INTO layers (name, last) VALUES (?, 1) ON CONFLICT (name) DO UPDATE"
                " SET last = last + 1 RETURNING last",
                (layer.name,),
            ).fetchone()
            numbered = dataclasses.replace(layer, version=int(row[0]))
            c.execute(
                "INSERT INTO layer_versions (name, version, config) VALUES (?, ?, ?)",
                (numbered.name, numbered.version, orjson.dumps(numbered.to_json()).decode()),
            )
        return numbered

    def get_layer_version(self, name: str, version: int) -> LayerVersion | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT config FROM layer_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        return LayerVersion.from_json(orjson.loads(row[0])) if row else None

    def list_layer_versions(self, name: str | None) -> list[LayerVersion]:
        with self._lock:
            if name is None:
                rows = self._conn.execute(
                    "SELECT config FROM layer_versions ORDER BY name, version DESC"
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT config FROM layer_versions WHERE name = ? ORDER BY version DESC",
                    (name,),
                ).fetchall()
        return [LayerVersion.from_json(orjson.loads(r[0])) for r in rows]

    def delete_layer_version(self, name: str, version: int) -> bool:
        def work(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "DELETE FROM layer_versions WHERE name = ? AND version = ?", (name, version)
            )
            return cur.rowcount > 0

        return self._freeing(work)

    def get_layer_policy(self, name: str, version: int) -> tuple[list[dict[str, Any]], str] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT policy, policy_revision FROM layer_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
        return (orjson.loads(row[0]), str(row[1])) if row else None

    def put_layer_policy(
        self, name: str, version: int, statements: list[dict[str, Any]], revision_id: str
    ) -> None:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE layer_versions SET policy = ?, policy_revision = ? WHERE name = ? AND version = ?",
                (orjson.dumps(statements).decode(), revision_id, name, version),
            )
            if cur.rowcount == 0:
                raise ResourceNotFound(f"Layer version {name}:{version} does not exist.")

    # -- access keys -------------------------------------------------------------------------

    _KEY_COLUMNS = "access_key_id, secret_access_key, kind, session_token, created"

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {self._KEY_COLUMNS} FROM access_keys WHERE access_key_id = ?",
                (access_key_id,),
            ).fetchone()
        return AccessKey(*row) if row else None

    def first_access_key(self, kind: str) -> AccessKey | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {self._KEY_COLUMNS} FROM access_keys WHERE kind = ? ORDER BY created LIMIT 1",
                (kind,),
            ).fetchone()
        return AccessKey(*row) if row else None

    def add_access_key(self, key: AccessKey) -> None:
        with self._tx() as c:
            c.execute(
                f"INSERT INTO access_keys ({self._KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (
                    key.access_key_id,
                    key.secret_access_key,
                    key.kind,
                    key.session_token,
                    key.created,
                ),
            )
