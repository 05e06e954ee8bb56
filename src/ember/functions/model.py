"""A function's stored configuration: one immutable record per (function, version)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LATEST = "$LATEST"


@dataclass(frozen=True)
class LayerRef:
    """One of a function's layers, captured when it was configured (a deleted layer version
    keeps working for the functions that use it, as on Lambda)."""

    arn: str  # the layer version ARN
    code_size: int  # zipped bytes
    sha256: str  # hex digest of the layer's zip; content address in the package store


@dataclass(frozen=True)
class FunctionRecord:
    name: str
    version: str
    runtime: str
    role: str
    handler: str
    code_sha256: str  # hex digest of the uploaded zip; content address of the stored package
    code_size: int
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    ephemeral_storage: int = 512
    environment: dict[str, str] = field(default_factory=dict)
    architectures: tuple[str, ...] = ("x86_64",)
    tracing_mode: str = "PassThrough"
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None
    log_group: str | None = None
    revision_id: str = ""
    last_modified: float = 0.0  # seconds since the epoch
    dead_letter_target: str | None = None  # SQS/SNS ARN; stored now, delivered once those exist
    layers: tuple[LayerRef, ...] = ()  # mounted at /opt in order, later ones overlaying earlier
    state: str = "Active"
    last_update_status: str = "Successful"

    @property
    def effective_log_group(self) -> str:
        return self.log_group or f"/aws/lambda/{self.name}"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["architectures"] = list(self.architectures)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["architectures"] = tuple(values.get("architectures", ("x86_64",)))
        values["layers"] = tuple(LayerRef(**layer) for layer in values.get("layers", ()))
        return cls(**values)

    def evolve(self, **changes: Any) -> FunctionRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Alias:
    """A named pointer at a function version; `weights` sends a share of traffic to one more."""

    function: str
    name: str
    version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = ""


@dataclass(frozen=True)
class ProvisionedConfig:
    """Provisioned concurrency requested for a function version or alias."""

    function: str
    qualifier: str
    requested: int
    last_modified: float
