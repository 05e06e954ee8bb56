"""Layers: published, immutable, numbered zips that functions mount (composed) at /opt.

A layer version is a stored zip (content-addressed in the package store, like code) plus its
metadata; versions are numbered per layer from 1 and a number is never reused, even after a
deletion. A function names its layers by version ARN; they are resolved into `LayerRef`s when
the function is configured, so a deleted layer version keeps working for the functions that
already use it (as on Lambda). Each version has its own resource policy (who may use it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ember.errors import (
    InvalidParameterValue,
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from ember.functions.model import LayerRef
from ember.functions.naming import PARTITION, version_number
from ember.functions.packages import PackageStore, storing_code
from ember.settings import Settings

if TYPE_CHECKING:
    from ember.store.base import Store

MAX_LAYERS = 5
POLICY_MAX_BYTES = 20 * 1024

_LAYER_ARN = re.compile(
    r"arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):layer:"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<version>[0-9]+))?"
)
_NOT_FOUND = "The resource you requested does not exist."


@dataclass(frozen=True)
class LayerVersion:
    name: str
    version: int
    sha256: str  # hex digest of the zip
    code_size: int  # zipped bytes
    unzipped_size: int
    description: str = ""
    license_info: str | None = None
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    created: float = 0.0  # seconds since the epoch

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerVersion:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["compatible_runtimes"] = tuple(values.get("compatible_runtimes", ()))
        values["compatible_architectures"] = tuple(values.get("compatible_architectures", ()))
        return cls(**values)

    def matches(self, runtime: str | None, architecture: str | None) -> bool:
        return (not runtime or runtime in self.compatible_runtimes) and (
            not architecture or architecture in self.compatible_architectures
        )


@dataclass(frozen=True)
class LayerPolicy:
    statements: list[dict[str, Any]]
    revision_id: str


class LayerService:
    def __init__(self, settings: Settings, store: Store, packages: PackageStore) -> None:
        self.settings = settings
        self.store = store
        self.packages = packages
        self.collect: Callable[[], None] = lambda: None  # asks for a garbage collection of code

    # -- naming --------------------------------------------------------------------------

    def layer_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:layer:{name}"

    def version_arn(self, name: str, version: int) -> str:
        return f"{self.layer_arn(name)}:{version}"

    def _local(self, found: re.Match[str]) -> bool:
        """Whether a layer ARN is of this partition, region and account (else it names nothing)."""
        return (
            found["partition"] == PARTITION
            and found["region"] == self.settings.region
            and found["account"] == self.settings.account_id
        )

    def layer_name(self, identifier: str) -> str:
        """A layer named by name or by layer ARN (this partition, account and region only)."""
        if not identifier.startswith("arn:"):
            return identifier
        found = _LAYER_ARN.fullmatch(identifier)
        if found is None or found["version"] is not None:
            raise InvalidParameterValue(f"Invalid layer name or ARN: {identifier}")
        if not self._local(found):
            raise ResourceNotFound(_NOT_FOUND)
        return found["name"]

    # -- layer versions ------------------------------------------------------------------

    def publish(self, identifier: str, zip_bytes: bytes, fields: dict[str, Any]) -> LayerVersion:
        name = self.layer_name(identifier)
        sha256 = hashlib.sha256(zip_bytes).hexdigest()
        try:
            # Garbage collection keeps away from the zip until the layer version is stored.
            with self.packages.holding([sha256]), storing_code():
                fresh = not self.packages.zip_path(sha256).exists()
                package = self.packages.put(zip_bytes)
                try:
                    self.packages.verify_extract(package.sha256)
                except InvalidParameterValue:
                    if fresh:  # the same bytes always fail the same way: nothing can use this zip
                        self.packages.zip_path(package.sha256).unlink(missing_ok=True)
                    raise
                self.store.add_code_package(package.sha256, package.size, package.unzipped_size)
                layer = LayerVersion(
                    name=name,
                    version=0,  # the store assigns the next number
                    sha256=package.sha256,
                    code_size=package.size,
                    unzipped_size=package.unzipped_size,
                    created=time.time(),
                    **fields,
                )
                return self.store.publish_layer_version(layer)
        except BaseException:
            if self.packages.zip_path(sha256).exists():  # stored for it, maybe unused now
                self.collect()
            raise

    def get(self, identifier: str, version: int) -> LayerVersion:
        layer = self.store.get_layer_version(self.layer_name(identifier), version)
        if layer is None:
            raise ResourceNotFound(_NOT_FOUND)
        return layer

    def get_by_arn(self, arn: str) -> LayerVersion:
        found = _LAYER_ARN.fullmatch(arn)
        if found is None or found["version"] is None:
            raise InvalidParameterValue(f"Invalid layer version ARN: {arn}")
        version = version_number(found["version"])
        if not self._local(found) or version is None:  # no such version here
            raise ResourceNotFound(_NOT_FOUND)
        return self.get(found["name"], version)

    def delete(self, identifier: str, version: int) -> None:
        """Idempotent, as Lambda's: deleting a version that does not exist succeeds."""
        self.store.delete_layer_version(self.layer_name(identifier), version)
        self.collect()  # its zip may be unused now

    def versions(
        self, identifier: str, runtime: str | None, architecture: str | None
    ) -> list[LayerVersion]:
        """A layer's versions matching the filters, newest first."""
        return [
            v
            for v in self.store.list_layer_versions(self.layer_name(identifier))
            if v.matches(runtime, architecture)
        ]

    def latest_matching(self, runtime: str | None, architecture: str | None) -> list[LayerVersion]:
        """Each layer's newest version matching the filters, by layer name."""
        latest: dict[str, LayerVersion] = {}
        for layer in self.store.list_layer_versions(None):
            if layer.name not in latest and layer.matches(runtime, architecture):
                latest[layer.name] = layer
        return [latest[name] for name in sorted(latest)]

    # -- policies ------------------------------------------------------------------------

    def _existing(self, identifier: str, version: int) -> tuple[str, LayerPolicy]:
        name = self.layer_name(identifier)
        if self.store.get_layer_version(name, version) is None:
            raise ResourceNotFound(
                f"Layer version {self.version_arn(name, version)} does not exist."
            )
        stored = self.store.get_layer_policy(name, version)
        return name, LayerPolicy(*stored) if stored else LayerPolicy([], "")

    @staticmethod
    def _expect(policy: LayerPolicy, revision_id: str | None) -> None:
        if revision_id and revision_id != policy.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetLayerPolicy API to retrieve the latest Revision Id"
            )

    def add_permission(
        self,
        identifier: str,
        version: int,
        statement_id: str,
        action: str,
        principal: str,
        organization_id: str | None,
        revision_id: str | None,
    ) -> tuple[dict[str, Any], str]:
        name, policy = self._existing(identifier, version)
        if any(s["Sid"] == statement_id for s in policy.statements):
            raise ResourceConflict(
                f"The statement id ({statement_id}) provided already exists. Please provide a new "
                "statement id, or remove the existing statement."
            )
        self._expect(policy, revision_id)
        statement: dict[str, Any] = {
            "Sid": statement_id,
            "Effect": "Allow",
            "Principal": "*" if principal == "*" else {"AWS": _principal_arn(principal)},
            "Action": action,
            "Resource": self.version_arn(name, version),
        }
        if organization_id:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": organization_id}}
        statements = [*policy.statements, statement]
        if len(self.document(statements)) > POLICY_MAX_BYTES:
            raise PolicyLengthExceeded("The final policy size is bigger than the limit.")
        revision = str(uuid.uuid4())
        self.store.put_layer_policy(name, version, statements, revision)
        return statement, revision

    def remove_permission(
        self, identifier: str, version: int, statement_id: str, revision_id: str | None
    ) -> None:
        name, policy = self._existing(identifier, version)
        self._expect(policy, revision_id)
        kept = [s for s in policy.statements if s["Sid"] != statement_id]
        if len(kept) == len(policy.statements):
            raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
        self.store.put_layer_policy(name, version, kept, str(uuid.uuid4()))

    def policy(self, identifier: str, version: int) -> tuple[str, str]:
        """(the policy document as AWS formats it, its revision id)."""
        _, policy = self._existing(identifier, version)
        if not policy.statements:
            raise ResourceNotFound("No policy is associated with the given resource.")
        return self.document(policy.statements), policy.revision_id

    @staticmethod
    def document(statements: list[dict[str, Any]]) -> str:
        return orjson.dumps(
            {"Version": "2012-10-17", "Id": "default", "Statement": statements}
        ).decode()

    # -- functions' layers ---------------------------------------------------------------

    def resolve(self, arns: list[str] | tuple[str, ...]) -> tuple[LayerRef, ...]:
        """A function's Layers (version ARNs, in order) → the layers it will mount."""
        if len(arns) > MAX_LAYERS:
            raise InvalidParameterValue(f"Cannot reference more than {MAX_LAYERS} layers.")
        refs: list[LayerRef] = []
        seen: dict[str, str] = {}
        for arn in arns:
            found = _LAYER_ARN.fullmatch(arn)
            if (
                found is None
                or found["version"] is None
                or version_number(found["version"]) is None
            ):
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if found["partition"] != PARTITION:
                raise InvalidParameterValue(
                    f"Layer version {arn} is in another partition: Ember's is '{PARTITION}'."
                )
            if found["region"] != self.settings.region:
                raise InvalidParameterValue(
                    f"Layer version {arn} is in another region: a function's layers must be in "
                    f"its region ({self.settings.region})."
                )
            if found["account"] != self.settings.account_id:
                raise InvalidParameterValue(
                    f"Layer version {arn} is in another account: Ember serves account "
                    f"{self.settings.account_id} only."
                )
            layer_arn = arn.rsplit(":", 1)[0]
            if layer_arn in seen:
                raise InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be referenced in "
                    f"the same function. {seen[layer_arn]} and {arn} are versions of the same layer."
                )
            seen[layer_arn] = arn
            layer = self.store.get_layer_version(found["name"], int(found["version"]))
            if layer is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            refs.append(
                LayerRef(
                    arn=self.version_arn(layer.name, layer.version),
                    code_size=layer.code_size,
                    sha256=layer.sha256,
                )
            )
        return tuple(refs)

    def unzipped_size(self, refs: tuple[LayerRef, ...]) -> int:
        """The layers' unzipped bytes, as recorded when they were published."""
        return sum(self.packages.declared_size(ref.sha256) for ref in refs)


def _principal_arn(principal: str) -> str:
    """An account id becomes its root ARN, as AWS writes it in the policy."""
    return principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"
