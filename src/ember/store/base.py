"""The Store interface every backend implements. Records in, records out; no SQL leaks above it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ember.functions.model import Alias, FunctionRecord, ProvisionedConfig

if TYPE_CHECKING:
    from ember.functions.access_keys import AccessKey
    from ember.functions.layers import LayerVersion
    from ember.store.sqlite import CodeReferences


class Store(Protocol):
    def close(self) -> None: ...

    def get_function(self, name: str, version: str) -> FunctionRecord | None: ...

    def create_function(self, record: FunctionRecord) -> None:
        """Insert a new function; raises ResourceConflict when the name exists."""

    def update_function(self, record: FunctionRecord, expected_revision: str | None) -> None:
        """Replace a function version's record. When `expected_revision` is given and differs
        from the stored one, raises PreconditionFailed and changes nothing."""

    def delete_function(self, name: str) -> bool:
        """Delete a function and all its versions; False when it did not exist."""

    def list_functions(self, after: str | None, limit: int) -> list[FunctionRecord]:
        """$LATEST records ordered by name, starting after `after`."""

    def add_code_package(self, sha256: str, size: int, unzipped: int) -> None: ...

    def code_usage(self) -> tuple[int, int]:
        """(number of functions, total stored code bytes)."""

    def code_references(self) -> CodeReferences:
        """Every stored zip and unpacked tree some function version or layer version uses."""

    def forget_code_packages(self, shas: list[str]) -> None:
        """Drop the records of packages whose zips were garbage-collected."""

    def put_event_config(
        self, function: str, qualifier: str, config: dict[str, Any], now: float
    ) -> None: ...

    def get_event_config(
        self, function: str, qualifier: str
    ) -> tuple[dict[str, Any], float] | None: ...

    def delete_event_config(self, function: str, qualifier: str) -> bool: ...

    def list_event_configs(self, function: str) -> list[tuple[str, dict[str, Any], float]]: ...

    # -- versions, aliases, concurrency (0003) --

    def publish_version(
        self,
        latest: FunctionRecord,
        expected_revision: str | None,
        make: Callable[[FunctionRecord, str], FunctionRecord],
    ) -> FunctionRecord:
        """Store `make(latest, <next number>)` atomically; PreconditionFailed when $LATEST's
        revision is no longer `expected_revision` (or `latest`'s)."""

    def last_version(self, name: str) -> FunctionRecord | None: ...

    def list_versions(self, name: str, after: int, limit: int) -> list[FunctionRecord]:
        """$LATEST (order -1) then published versions by number, those after `after`."""

    def list_all_versions(
        self, after: tuple[str, int] | None, limit: int
    ) -> list[FunctionRecord]: ...

    def delete_version(self, name: str, version: str) -> bool:
        """ResourceConflict while an alias routes to the version."""

    def get_alias(self, function: str, name: str) -> Alias | None: ...

    def list_aliases(self, function: str) -> list[Alias]: ...

    def put_alias(self, alias: Alias, create: bool, expected_revision: str | None) -> None: ...

    def delete_alias(self, function: str, name: str) -> bool: ...

    def put_reserved_concurrency(self, function: str, reserved: int | None) -> None: ...

    def reserved_concurrency(self) -> dict[str, int]: ...

    def put_provisioned(self, config: ProvisionedConfig) -> None: ...

    def delete_provisioned(self, function: str, qualifier: str) -> bool: ...

    def list_provisioned(self, function: str | None = None) -> list[ProvisionedConfig]: ...

    # -- resource policies, tags, function URLs (qualifier '' = the unqualified function) --

    def get_policy(self, function: str, qualifier: str) -> tuple[list[dict[str, Any]], str] | None:
        """(statements, revision id), or None when the function has no policy there."""

    def put_policy(
        self, function: str, qualifier: str, statements: list[dict[str, Any]], revision_id: str
    ) -> None:
        """Replace the policy; an empty statement list deletes it."""

    def get_tags(self, function: str) -> dict[str, str]: ...

    def tag(self, function: str, tags: dict[str, str]) -> None: ...

    def untag(self, function: str, keys: list[str]) -> None: ...

    def put_function_url(self, url: tuple[str, str, str, dict[str, Any], float, float]) -> None:
        """Insert or replace (url_id, function, qualifier, config, created, last_modified);
        raises ResourceConflict when (function, qualifier) already has another URL."""

    def get_function_url(
        self, url_id: str
    ) -> tuple[str, str, str, dict[str, Any], float, float] | None: ...

    def find_function_urls(
        self, function: str, qualifier: str | None = None
    ) -> list[tuple[str, str, str, dict[str, Any], float, float]]:
        """A function's URLs (one qualifier's when given), ordered by qualifier."""

    def delete_function_url(self, function: str, qualifier: str) -> bool: ...

    # -- layers (0005) --

    def publish_layer_version(self, layer: LayerVersion) -> LayerVersion:
        """Store `layer` under its layer's next version number (never reused); returns it numbered."""

    def get_layer_version(self, name: str, version: int) -> LayerVersion | None: ...

    def list_layer_versions(self, name: str | None) -> list[LayerVersion]:
        """One layer's versions (every layer's when `name` is None), by name, newest first."""

    def delete_layer_version(self, name: str, version: int) -> bool: ...

    def get_layer_policy(self, name: str, version: int) -> tuple[list[dict[str, Any]], str] | None:
        """(statements, revision id) of an existing layer version; None when it does not exist."""

    def put_layer_policy(
        self, name: str, version: int, statements: list[dict[str, Any]], revision_id: str
    ) -> None: ...

    # -- access keys (0006) --

    def get_access_key(self, access_key_id: str) -> AccessKey | None: ...

    def first_access_key(self, kind: str) -> AccessKey | None:
        """The oldest key of `kind` ('user' or 'function'), None when there is none."""

    def add_access_key(self, key: AccessKey) -> None: ...
