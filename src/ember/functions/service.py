"""The functions' lifecycle: create, read, change and delete, with Lambda's rules enforced.

Every change is validated on the complete resulting record before anything is stored, so a
rejected request leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
    raise_if_any,
    range_problem,
)
from ember.functions.layers import LayerService
from ember.functions.model import LATEST, Alias, FunctionRecord
from ember.functions.naming import PARTITION, names_a_version
from ember.functions.packages import Package, PackageStore, storing_code
from ember.runtime_catalog import Runtime
from ember.settings import Settings
from ember.store.base import Store

RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ARN = re.compile(
    r"arn:(?P<partition>[^:]*):lambda:(?P<region>[^:]*):(?P<account>[^:]*):function:"
    r"(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?"
)
_PARTIAL = re.compile(r"(?P<account>[0-9]{12}):function:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?")
_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine()
)


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None


def _expect_revision(current: FunctionRecord, revision_id: str | None) -> None:
    """Refuse a stale RevisionId before any work (the store checks again, atomically)."""
    if revision_id is not None and revision_id != current.revision_id:
        raise PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
        )


def timestamp(seconds: float) -> str:
    """Lambda's LastModified form: 2024-03-01T12:34:56.789+0000."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}+0000"


class FunctionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        packages: PackageStore,
        runtimes: dict[str, Runtime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.packages = packages
        self.runtimes = runtimes
        self.change_listeners: list[Callable[[str], None]] = []  # $LATEST of a function changed
        # A function (version None) or one of its versions was deleted.
        self.removal_listeners: list[Callable[[str, str | None], None]] = []
        # Records are read on every invocation; every change goes through this service, which
        # drops the cached entries of the function it changed.
        self._records: dict[tuple[str, str], FunctionRecord] = {}
        self._task_dirs: dict[tuple[str, str], str] = {}
        self.layers = LayerService(settings, store, packages)
        self._opt_dirs: dict[tuple[tuple[str, ...], str], str] = {}
        self._aliases: dict[tuple[str, str], Alias] = {}
        # Asks for a garbage collection of stored code soon (set by the platform).
        self.collect: Callable[[], None] = lambda: None
        self.layers.collect = lambda: self.collect()

    # -- naming --------------------------------------------------------------------------

    def arn(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def parse_ref(self, identifier: str) -> FunctionRef:
        """A function named by name, `name:qualifier`, partial ARN or full ARN. An ARN of
        another partition, region or account names no function here: 404, as AWS answers for
        another region ("Functions from 'eu-west-1' are not reachable in this region")."""
        found = _ARN.fullmatch(identifier) or _PARTIAL.fullmatch(identifier)
        if found:
            groups = found.groupdict()
            region = groups.get("region", self.settings.region)
            if region != self.settings.region:
                raise ResourceNotFound(
                    f"Functions from '{region}' are not reachable in this region ('{self.settings.region}')"
                )
            if (
                groups.get("partition", PARTITION) != PARTITION
                or groups["account"] != self.settings.account_id
            ):
                raise ResourceNotFound(f"Function not found: {identifier}")
            name, qualifier = groups["name"], groups["qualifier"]
        elif identifier.startswith("arn:") or identifier.count(":") > 1:
            raise ResourceNotFound(f"Function not found: {identifier}")  # no form Lambda accepts
        else:
            name, _, qualifier_text = identifier.partition(":")
            qualifier = qualifier_text or None
        if not _NAME.fullmatch(name):
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'functionName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
                "(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
            )
        return FunctionRef(name, qualifier)

    # -- reads ---------------------------------------------------------------------------

    def get(self, identifier: str, qualifier: str | None = None) -> FunctionRecord:
        """The record a name, version, alias or ARN stands for (an alias: its primary version)."""
        ref = self.parse_ref(identifier)
        return self._version(ref.name, self._qualifier(ref, qualifier), weighted=False)

    def pick(self, identifier: str, qualifier: str | None = None) -> FunctionRecord:
        """Like `get`, but an alias with a routing configuration picks a version by its weights
        (at random, per call): what an invocation runs."""
        ref = self.parse_ref(identifier)
        return self._version(ref.name, self._qualifier(ref, qualifier), weighted=True)

    def qualifier_of(self, identifier: str, qualifier: str | None = None) -> str | None:
        """The qualifier a request names (in the function name or apart), None for none."""
        ref = self.parse_ref(identifier)
        return (
            None if ref.qualifier is None and qualifier is None else self._qualifier(ref, qualifier)
        )

    def alias(self, name: str, alias_name: str) -> Alias | None:
        found = self._aliases.get((name, alias_name))
        if found is None:
            found = self.store.get_alias(name, alias_name)
            if found is not None:
                self._aliases[(name, alias_name)] = found
        return found

    def _qualifier(self, ref: FunctionRef, qualifier: str | None) -> str:
        if ref.qualifier and qualifier and ref.qualifier != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        return qualifier or ref.qualifier or LATEST

    def _version(self, name: str, qualifier: str, weighted: bool) -> FunctionRecord:
        version = qualifier
        if qualifier != LATEST and not names_a_version(qualifier):
            alias = self.alias(name, qualifier)
            if alias is None:
                raise ResourceNotFound(f"Function not found: {self.arn(name, qualifier)}")
            version = alias.version
            if weighted and alias.weights:
                extra, weight = next(iter(alias.weights.items()))
                if random.random() < weight:
                    version = extra
        record = self._records.get((name, version))
        if record is None:
            record = self.store.get_function(name, version)
            if record is not None:
                self._records[(name, version)] = record
        if record is None:
            raise ResourceNotFound(
                f"Function not found: {self.arn(name, qualifier if qualifier != LATEST else None)}"
            )
        return record

    def list(self, after: str | None, limit: int) -> tuple[list[FunctionRecord], str | None]:
        records = self.store.list_functions(after, limit + 1)
        more = len(records) > limit
        records = records[:limit]
        return records, (records[-1].name if more and records else None)

    # -- changes -------------------------------------------------------------------------

    def create(self, name: str, zip_bytes: bytes, fields: dict[str, Any]) -> FunctionRecord:
        ref = self.parse_ref(name)
        if ref.qualifier:
            raise InvalidParameterValue(
                "A function name given at creation cannot carry a qualifier"
            )
        if not fields.get("runtime") or not fields.get("handler"):
            raise InvalidParameterValue(
                "Runtime and Handler are mandatory parameters for functions created with deployment packages."
            )
        if self.store.get_function(ref.name, LATEST) is not None:
            raise ResourceConflict(f"Function already exist: {ref.name}")
        package = self.packages.check(zip_bytes)[0]
        fields = self._resolve_layers(fields)
        record = FunctionRecord(
            name=ref.name,
            version=LATEST,
            code_sha256=package.sha256,
            code_size=package.size,
            revision_id=str(uuid.uuid4()),
            last_modified=time.time(),
            **fields,
        )
        self._check(record)
        self._check_unzipped(record, package.unzipped_size)
        with self._storing(record):
            self._install(zip_bytes, record)
            self.opt_dir(record, fresh=True)  # composes the layers now: their problems surface here
            self.store.create_function(record)
        self._version(record.name, LATEST, weighted=False)  # cached now, not on the first invoke
        return record

    def update_code(
        self, identifier: str, zip_bytes: bytes, revision_id: str | None, dry_run: bool
    ) -> FunctionRecord:
        current = self._latest(identifier)
        _expect_revision(current, revision_id)
        package = self.packages.check(zip_bytes)[0]
        record = current.evolve(
            code_sha256=package.sha256,
            code_size=package.size,
            revision_id=str(uuid.uuid4()),
            last_modified=time.time(),
        )
        self._check_unzipped(record, package.unzipped_size)
        if dry_run:
            return record
        with self._storing(record):
            self._install(zip_bytes, record)
            self.store.update_function(record, revision_id)
        self._changed(record.name)
        self.collect()  # the previous code may be unused now
        return record

    def update_configuration(
        self, identifier: str, changes: dict[str, Any], revision_id: str | None
    ) -> FunctionRecord:
        current = self._latest(identifier)
        _expect_revision(current, revision_id)
        changes = self._resolve_layers(changes)
        record = current.evolve(**changes, revision_id=str(uuid.uuid4()), last_modified=time.time())
        self._check(record)
        if record.layers != current.layers:
            self._check_unzipped(record, self.packages.declared_size(record.code_sha256))
        with self._storing(record):
            if record.runtime != current.runtime:
                self._unpack(record)
            self.opt_dir(record, fresh=True)
            self.store.update_function(record, revision_id)
        self._changed(record.name)
        if record.runtime != current.runtime or record.layers != current.layers:
            self.collect()  # the previous runtime's tree or layers' composition may be unused now
        return record

    def delete(self, identifier: str, qualifier: str | None) -> None:
        """Delete a function (every version), or with a version number one published version."""
        ref = self.parse_ref(identifier)
        version = qualifier or ref.qualifier
        if version == LATEST:
            raise InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function."
            )
        if version and not names_a_version(version):
            raise InvalidParameterValue("Deletion of aliases is not supported.")
        if version:
            if not self.store.delete_version(ref.name, version):
                raise ResourceNotFound(f"Function not found: {self.arn(ref.name, version)}")
        elif not self.store.delete_function(ref.name):
            raise ResourceNotFound(f"Function not found: {self.arn(ref.name)}")
        self.forget(ref.name)
        for listener in self.removal_listeners:
            listener(ref.name, version)
        if not version:
            self._changed(ref.name)
        self.collect()  # its code may be unused now

    # -- helpers -------------------------------------------------------------------------

    def _latest(self, identifier: str) -> FunctionRecord:
        ref = self.parse_ref(identifier)
        if ref.qualifier not in (None, LATEST):
            raise InvalidParameterValue("Only the $LATEST version of a function can be changed")
        return self.get(ref.name)

    def forget(self, name: str) -> None:
        """Drop the cached records and aliases of `name` (after any change to them)."""
        for key in [k for k in self._records if k[0] == name]:
            del self._records[key]
        for alias_key in [k for k in self._aliases if k[0] == name]:
            del self._aliases[alias_key]

    def _changed(self, name: str) -> None:
        self.forget(name)
        for listener in self.change_listeners:
            listener(name)

    @contextlib.contextmanager
    def _storing(self, record: FunctionRecord) -> Iterator[None]:
        """Around storing a record's code and the record: garbage collection keeps away from
        its code until the record is stored; a full disk is CodeStorageExceeded; on failure
        whatever was written for it and is not used is collected."""
        names = self.packages.names_for(
            record.code_sha256, record.runtime, tuple(layer.sha256 for layer in record.layers)
        )
        try:
            with self.packages.holding(names), storing_code():
                yield
        except BaseException:
            if self.packages.zip_path(
                record.code_sha256
            ).exists():  # something may be left to collect
                self.collect()
            raise

    def forget_dirs(self, names: set[str]) -> None:
        """Drop cached paths of unpacked trees that garbage collection removed."""
        for key, path in list(self._task_dirs.items()):
            if os.path.basename(path) in names:
                self._task_dirs.pop(key, None)
        for opt_key, path in list(self._opt_dirs.items()):
            if os.path.basename(path) in names:
                self._opt_dirs.pop(opt_key, None)

    def _install(self, zip_bytes: bytes, record: FunctionRecord) -> Package:
        fresh = not self.packages.zip_path(record.code_sha256).exists()
        package = self.packages.put(zip_bytes)
        try:
            self._unpack(record)  # refuses links out of the tree and zips that lie about sizes
        except InvalidParameterValue:
            if fresh:  # the same bytes always fail the same way: nothing can use this zip
                self.packages.zip_path(package.sha256).unlink(missing_ok=True)
            raise
        self.store.add_code_package(package.sha256, package.size, package.unzipped_size)
        return package

    def _unpack(self, record: FunctionRecord) -> None:
        runtime = self.runtimes[record.runtime]
        self.packages.unpack(record.code_sha256, record.runtime, runtime.executable)

    def task_dir(self, record: FunctionRecord) -> str:
        """The unpacked, read-only code directory for a record (unpacking it if needed)."""
        key = (record.code_sha256, record.runtime)
        path = self._task_dirs.get(key)
        if path is None:
            runtime = self.runtimes[record.runtime]
            path = str(self.packages.unpack(record.code_sha256, record.runtime, runtime.executable))
            self._task_dirs[key] = path
        return path

    # -- layers --------------------------------------------------------------------------

    def _resolve_layers(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`layers` given as version ARNs (the API's Layers) → the LayerRefs a record keeps."""
        if "layers" not in fields:
            return fields
        return {**fields, "layers": self.layers.resolve(fields["layers"])}

    def _check_unzipped(self, record: FunctionRecord, code_unzipped: int) -> None:
        if not record.layers:
            return
        limit = self.settings.limits.unzipped_bytes
        total = code_unzipped + self.layers.unzipped_size(record.layers)
        if total > limit:
            raise InvalidParameterValue(
                f"Function code combined with layers exceeds the maximum allowed size of {limit} "
                f"bytes. The actual size is {total} bytes."
            )

    def opt_dir(self, record: FunctionRecord, fresh: bool = False) -> str | None:
        """The composed, read-only layers directory mounted at /opt (None without layers);
        `fresh` composes it if it is missing even when a path is cached."""
        if not record.layers:
            return None
        key = (tuple(layer.sha256 for layer in record.layers), record.runtime)
        path = self._opt_dirs.get(key)
        if path is None or fresh:
            runtime = self.runtimes[record.runtime]
            path = str(self.packages.compose(key[0], record.runtime, runtime.executable))
            self._opt_dirs[key] = path
        return path

    def _check(self, record: FunctionRecord) -> None:
        limits = self.settings.limits
        problems = [
            p
            for p in (
                range_problem(
                    record.memory_size, "memorySize", limits.memory_min_mb, limits.memory_max_mb
                ),
                range_problem(record.timeout, "timeout", 1, limits.timeout_max_s),
                range_problem(
                    record.ephemeral_storage,
                    "ephemeralStorage.size",
                    limits.ephemeral_min_mb,
                    limits.ephemeral_max_mb,
                ),
            )
            if p
        ]
        raise_if_any(problems)
        if record.runtime not in self.runtimes:
            supported = ", ".join(sorted(self.runtimes)) or "none"
            raise InvalidParameterValue(
                f"The runtime parameter of {record.runtime} is not supported by this Ember host. "
                f"Supported runtimes: {supported}."
            )
        if not record.handler:
            raise InvalidParameterValue("Handler is required for a .zip deployment package.")
        for arch in record.architectures:
            if arch != _HOST_ARCH:
                raise InvalidParameterValue(
                    f"Architecture {arch} is not supported on this host; it runs {_HOST_ARCH}."
                )
        reserved = sorted(k for k in record.environment if k in RESERVED_ENV)
        if reserved:
            raise InvalidParameterValue(
                "Lambda was unable to configure your environment variables because the environment "
                "variables you have provided contains reserved keys that are currently not "
                f"supported for modification. Reserved keys used in this request: {', '.join(reserved)}"
            )
        measured = orjson.dumps(record.environment)
        if len(measured) > limits.env_vars_bytes:
            raise InvalidParameterValue(
                "Lambda was unable to configure your environment variables because the environment "
                f"variables you have provided exceeded the {limits.env_vars_bytes // 1024}KB limit. "
                f"String measured: {measured.decode()}"
            )
