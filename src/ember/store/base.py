"""The Store interface every backend implements. Records in, records out; no SQL leaks above it."""

from __future__ import annotations

from typing import Any, Protocol

from ember.functions.model import FunctionRecord


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

    def put_event_config(self, function: str, qualifier: str, config: dict[str, Any], now: float) -> None: ...

    def get_event_config(self, function: str, qualifier: str) -> tuple[dict[str, Any], float] | None: ...

    def delete_event_config(self, function: str, qualifier: str) -> bool: ...

    def list_event_configs(self, function: str) -> list[tuple[str, dict[str, Any], float]]: ...
