"""Published versions and aliases: immutable snapshots of $LATEST, and names that point at them.

A version is a row of the functions table with a number for its version; it never changes. An
alias points at one version and may send a share of its traffic to one more (routing weights);
`FunctionService.pick` resolves that per invocation.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.functions.model import LATEST, Alias, FunctionRecord
from ember.functions.naming import names_a_version, version_number
from ember.functions.service import FunctionService
from ember.store.base import Store

# Fields that do not make a version different from the one before it.
_NOT_CONTENT = frozenset(
    {
        "version",
        "revision_id",
        "last_modified",
        "description",
        "tags",
        "state",
        "last_update_status",
    }
)

LATEST_PUBLISHED = "$LATEST.PUBLISHED"


def _content(record: FunctionRecord) -> dict[str, Any]:
    return {k: v for k, v in record.to_json().items() if k not in _NOT_CONTENT}


class VersionService:
    def __init__(self, functions: FunctionService, store: Store) -> None:
        self.functions = functions
        self.store = store

    # -- versions ------------------------------------------------------------------------

    def publish(
        self,
        identifier: str,
        code_sha256: str | None = None,
        description: str | None = None,
        revision_id: str | None = None,
    ) -> FunctionRecord:
        """Snapshot $LATEST as the next version; with nothing changed since the last published
        version, that version is returned instead."""
        ref = self.functions.parse_ref(identifier)
        latest = self.functions.get(ref.name)
        current = base64.b64encode(bytes.fromhex(latest.code_sha256)).decode()
        if code_sha256 and code_sha256 != current:
            raise InvalidParameterValue(
                f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST ({current}). "
                "Please try again with the CodeSHA256 in $LATEST."
            )
        if revision_id is not None and revision_id != latest.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        last = self.store.last_version(ref.name)
        if last is not None and _content(last) == _content(latest):
            return last

        def make(source: FunctionRecord, number: str) -> FunctionRecord:
            return source.evolve(
                version=number,
                revision_id=str(uuid.uuid4()),
                last_modified=time.time(),
                description=source.description if description is None else description,
            )

        return self.store.publish_version(latest, revision_id, make)

    def list_versions(
        self, identifier: str, after: str | None, limit: int
    ) -> tuple[list[FunctionRecord], str | None]:
        """One page of $LATEST and the published versions, and the version the next starts after."""
        ref = self.functions.parse_ref(identifier)
        self.functions.get(ref.name)  # 404 for an unknown function
        order = (
            -2 if after is None or after == "" else -1 if after == LATEST else version_number(after)
        )
        if order is None:
            raise InvalidParameterValue("Invalid pagination marker")
        records = self.store.list_versions(ref.name, order, limit + 1)
        more = len(records) > limit
        records = records[:limit]
        return records, (records[-1].version if more and records else None)

    # -- aliases -------------------------------------------------------------------------

    def create_alias(
        self,
        identifier: str,
        name: str,
        version: str,
        description: str | None,
        weights: dict[str, float] | None,
    ) -> Alias:
        function = self._function(identifier)
        alias = Alias(
            function, name, version, description or "", dict(weights or {}), str(uuid.uuid4())
        )
        self._check(alias)
        if self.store.get_alias(function, name) is not None:
            raise ResourceConflict(f"Alias already exists: {self.functions.arn(function, name)}")
        self.store.put_alias(alias, create=True, expected_revision=None)
        self.functions.forget(function)
        return alias

    def get_alias(self, identifier: str, name: str) -> Alias:
        function = self._function(identifier)
        alias = self.store.get_alias(function, name)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.functions.arn(function, name)}")
        return alias

    def update_alias(
        self,
        identifier: str,
        name: str,
        version: str | None,
        description: str | None,
        weights: dict[str, float] | None,
        revision_id: str | None,
    ) -> Alias:
        current = self.get_alias(identifier, name)
        if revision_id is not None and revision_id != current.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        alias = Alias(
            current.function,
            name,
            current.version if version is None else version,
            current.description if description is None else description,
            dict(current.weights if weights is None else weights),
            str(uuid.uuid4()),
        )
        self._check(alias)
        self.store.put_alias(alias, create=False, expected_revision=current.revision_id)
        self.functions.forget(current.function)
        return alias

    def delete_alias(self, identifier: str, name: str) -> None:
        function = self._function(identifier)
        if not self.store.delete_alias(function, name):
            raise ResourceNotFound(f"Cannot find alias arn: {self.functions.arn(function, name)}")
        self.functions.forget(function)

    def list_aliases(self, identifier: str, version: str | None) -> list[Alias]:
        function = self._function(identifier)
        return [
            a
            for a in self.store.list_aliases(function)
            if version is None or a.version == version or version in a.weights
        ]

    # -- helpers -------------------------------------------------------------------------

    def _function(self, identifier: str) -> str:
        """The function's name; 404 when it does not exist."""
        ref = self.functions.parse_ref(identifier)
        return self.functions.get(ref.name).name

    def _exists(self, function: str, version: str) -> None:
        if version == LATEST_PUBLISHED:
            raise InvalidParameterValue(
                f"{LATEST_PUBLISHED} is not supported by Ember: name a version number or $LATEST."
            )
        self.functions.get(function, version)  # Function not found: <arn>:<version>

    def _check(self, alias: Alias) -> None:
        """Lambda's rules for an alias's target and routing configuration."""
        self._exists(alias.function, alias.version)
        if len(alias.weights) > 1:
            raise InvalidParameterValue(
                "Number of items in AdditionalVersionWeights cannot be greater than 1"
            )
        for extra, weight in alias.weights.items():
            if not names_a_version(extra):
                raise ValidationError(
                    f"1 validation error detected: Value '{{{extra}={weight}}}' at "
                    "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must "
                    "satisfy constraint: [Member must have length less than or equal to 1024, Member must "
                    "have length greater than or equal to 1, Member must satisfy regular expression pattern: "
                    "[0-9]+]"
                )
            if not 0.0 <= weight <= 1.0:
                raise ValidationError(
                    f"1 validation error detected: Value '{{{extra}={weight}}}' at "
                    "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must "
                    "satisfy constraint: [Member must have value less than or equal to 1.0, Member must have "
                    "value greater than or equal to 0.0]"
                )
            if extra == alias.version:
                raise InvalidParameterValue(
                    f"Invalid function version {extra}. Function version {extra} is already included in "
                    "routing configuration."
                )
            if alias.version == LATEST:
                raise InvalidParameterValue(
                    "$LATEST is not supported for an alias pointing to more than 1 version"
                )
            self._exists(alias.function, extra)
