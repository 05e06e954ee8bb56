"""Asynchronous invocation settings per function and qualifier (Lambda's EventInvokeConfig)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.functions.model import LATEST
from ember.functions.naming import PARTITION
from ember.functions.service import FunctionService
from ember.store.base import Store

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_S = 21600

_FUNCTION_ARN = re.compile(
    r"arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>[a-zA-Z0-9$_-]+))?"
)


@dataclass(frozen=True)
class Target:
    function: str
    qualifier: str | None


@dataclass(frozen=True)
class AsyncPolicy:
    """What the dispatcher needs for one event."""

    max_retries: int = DEFAULT_RETRIES
    max_age_s: int = DEFAULT_MAX_AGE_S
    on_success: Target | None = None
    on_failure: Target | None = None


@dataclass(frozen=True)
class EventConfig:
    function: str
    qualifier: str
    config: dict[str, Any]
    last_modified: float


class EventConfigService:
    def __init__(self, functions: FunctionService, store: Store) -> None:
        self.functions = functions
        self.store = store

    def _key(self, identifier: str, qualifier: str | None) -> tuple[str, str]:
        ref = self.functions.parse_ref(identifier)
        record = self.functions.get(identifier, qualifier)  # 404 for unknown functions/qualifiers
        return ref.name, qualifier or ref.qualifier or record.version

    def arn(self, config: EventConfig) -> str:
        return self.functions.arn(config.function, config.qualifier)

    def _target(self, destination: str) -> Target:
        found = _FUNCTION_ARN.fullmatch(destination)
        if found is None:
            kind = destination.split(":")[2] if destination.count(":") >= 2 else destination
            raise InvalidParameterValue(
                f"The destination ARN {destination} is not supported: Ember delivers to Lambda "
                f"functions now ({kind} destinations are not supported yet)."
            )
        s = self.functions.settings
        if (
            found["partition"] != PARTITION
            or found["region"] != s.region
            or found["account"] != s.account_id
        ):
            raise InvalidParameterValue(
                f"The destination ARN {destination} is in another partition, account or region."
            )
        return Target(found["name"], found["qualifier"])

    def _checked(self, config: dict[str, Any]) -> dict[str, Any]:
        destinations = config.get("DestinationConfig") or {}
        for key in ("OnSuccess", "OnFailure"):
            arn = (destinations.get(key) or {}).get("Destination")
            if arn:
                self._target(arn)
        return config

    def put(
        self, identifier: str, qualifier: str | None, settings: dict[str, Any], merge: bool
    ) -> EventConfig:
        name, key = self._key(identifier, qualifier)
        if merge:
            existing = self.store.get_event_config(name, key)
            if existing is None:
                raise ResourceNotFound(
                    f"The function {self.functions.arn(name, key)} doesn't have an EventInvokeConfig"
                )
            config = dict(existing[0])
            for field in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
                if field in settings:
                    config[field] = settings[field]
            if "DestinationConfig" in settings:
                merged = dict(config.get("DestinationConfig") or {})
                merged.update(settings["DestinationConfig"] or {})
                config["DestinationConfig"] = merged
        else:
            config = {
                k: settings[k]
                for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
                if k in settings
            }
        now = time.time()
        self.store.put_event_config(name, key, self._checked(config), now)
        return EventConfig(name, key, config, now)

    def get(self, identifier: str, qualifier: str | None) -> EventConfig:
        name, key = self._key(identifier, qualifier)
        found = self.store.get_event_config(name, key)
        if found is None:
            raise ResourceNotFound(
                f"The function {self.functions.arn(name, key)} doesn't have an EventInvokeConfig"
            )
        return EventConfig(name, key, found[0], found[1])

    def delete(self, identifier: str, qualifier: str | None) -> None:
        name, key = self._key(identifier, qualifier)
        if not self.store.delete_event_config(name, key):
            raise ResourceNotFound(
                f"The function {self.functions.arn(name, key)} doesn't have an EventInvokeConfig"
            )

    def list(self, identifier: str) -> list[EventConfig]:
        name, _ = self._key(identifier, None)
        return [EventConfig(name, q, c, t) for q, c, t in self.store.list_event_configs(name)]

    def policy(self, function: str, qualifier: str | None) -> AsyncPolicy:
        """The settings that apply to an event for `function:qualifier` (defaults if none)."""
        found = self.store.get_event_config(function, qualifier or LATEST)
        if found is None:
            return AsyncPolicy()
        config = found[0]
        destinations = config.get("DestinationConfig") or {}

        def target(key: str) -> Target | None:
            arn = (destinations.get(key) or {}).get("Destination")
            return self._target(arn) if arn else None

        return AsyncPolicy(
            max_retries=int(config.get("MaximumRetryAttempts", DEFAULT_RETRIES)),
            max_age_s=int(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_S)),
            on_success=target("OnSuccess"),
            on_failure=target("OnFailure"),
        )
