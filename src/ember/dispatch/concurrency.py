"""Concurrency: the account's limit, functions' reservations, and provisioned instances.

`ConcurrencyLimiter` answers, without waiting, whether an invocation may start. A function with
reserved concurrency runs in its own pool of exactly that size (0 throttles everything); all
other functions share what the reservations leave of the account's limit. `ConcurrencyControls`
is the API behind Put/Get/DeleteFunctionConcurrency and the provisioned concurrency configs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from ember.errors import (
    EmberError,
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceConflict,
    ResourceNotFound,
    TooManyRequests,
)
from ember.functions.model import LATEST, FunctionRecord, ProvisionedConfig
from ember.functions.service import FunctionService
from ember.store.base import Store
from ember.worker.pool import WorkerPool

log = logging.getLogger(__name__)


class ConcurrencyLimiter:
    def __init__(self, limit: int, min_unreserved: int = 0) -> None:
        self.limit = limit
        self.min_unreserved = min_unreserved
        self.in_flight = 0  # every invocation running now
        self.reserved: dict[str, int] = {}
        self.reserved_total = 0
        self.reserved_in_flight = 0  # of in_flight, those of functions with a reservation
        self.by_function: dict[str, int] = {}

    @property
    def unreserved(self) -> int:
        """The account's limit minus every reservation (Lambda's UnreservedConcurrentExecutions)."""
        return self.limit - self.reserved_total

    def acquire(self, function: str = "") -> None:
        """Take a slot for `function` or raise Lambda's 429 (callers retry; nothing is queued)."""
        reserved = self.reserved.get(function)
        if reserved is not None:
            if self.by_function.get(function, 0) >= reserved:
                raise TooManyRequests(
                    "Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded"
                )
            self.reserved_in_flight += 1
        elif self.in_flight - self.reserved_in_flight >= self.limit - self.reserved_total:
            raise TooManyRequests("Rate Exceeded.", Reason="ConcurrentInvocationLimitExceeded")
        self.in_flight += 1
        self.by_function[function] = self.by_function.get(function, 0) + 1

    def release(self, function: str = "") -> None:
        self.in_flight -= 1
        left = self.by_function.get(function, 1) - 1
        if left > 0:
            self.by_function[function] = left
        else:
            self.by_function.pop(function, None)
        if function in self.reserved:
            self.reserved_in_flight -= 1

    def has_capacity(self, function: str = "", pending: int = 0) -> bool:
        """Whether `acquire(function)` would succeed with `pending` more already on their way."""
        reserved = self.reserved.get(function)
        if reserved is not None:
            return self.by_function.get(function, 0) + pending < reserved
        return self.in_flight - self.reserved_in_flight + pending < self.limit - self.reserved_total

    def reserve(self, function: str, reserved: int | None) -> None:
        """Set (None: remove) a function's reservation; invocations running keep their slots."""
        if reserved is None:
            self.reserved.pop(function, None)
        else:
            self.reserved[function] = reserved
        self.reserved_total = sum(self.reserved.values())
        self.reserved_in_flight = sum(self.by_function.get(f, 0) for f in self.reserved)


@dataclass
class ProvisionedState:
    status: str = "IN_PROGRESS"  # READY | FAILED
    reason: str | None = None
    allocated: int = 0


class ConcurrencyControls:
    """Reserved concurrency (enforced by the limiter) and provisioned concurrency (instances
    the worker pool keeps warm) per function, stored in the metadata store."""

    def __init__(
        self,
        functions: FunctionService,
        store: Store,
        limiter: ConcurrencyLimiter,
        pool: WorkerPool,
    ) -> None:
        self.functions = functions
        self.store = store
        self.limiter = limiter
        self.pool = pool
        self.states: dict[tuple[str, str], ProvisionedState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        for function, reserved in store.reserved_concurrency().items():
            limiter.reserve(function, reserved)
        functions.removal_listeners.append(self._removed)

    # -- reserved ------------------------------------------------------------------------

    def put_reserved(self, identifier: str, reserved: int) -> int:
        name = self._function(identifier)
        others = sum(n for f, n in self.limiter.reserved.items() if f != name)
        minimum = self.limiter.min_unreserved
        if self.limiter.limit - others - reserved < minimum:
            raise InvalidParameterValue(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
            )
        provisioned = sum(c.requested for c in self.store.list_provisioned(name))
        if provisioned > reserved:
            raise InvalidParameterValue(
                f"ReservedConcurrentExecutions {reserved} should not be lower than function's total "
                f"provisioned concurrency [{provisioned}]."
            )
        self.store.put_reserved_concurrency(name, reserved)
        self.limiter.reserve(name, reserved)
        return reserved

    def get_reserved(self, identifier: str) -> int | None:
        return self.limiter.reserved.get(self._function(identifier))

    def delete_reserved(self, identifier: str) -> None:
        name = self._function(identifier)
        self.store.put_reserved_concurrency(name, None)
        self.limiter.reserve(name, None)

    # -- provisioned ---------------------------------------------------------------------

    def put_provisioned(self, identifier: str, qualifier: str, requested: int) -> ProvisionedConfig:
        name, qualifier = self._target(identifier, qualifier)
        others = [c for c in self.store.list_provisioned(name) if c.qualifier != qualifier]
        reserved = self.limiter.reserved.get(name)
        if reserved is not None and sum(c.requested for c in others) + requested > reserved:
            raise InvalidParameterValue(
                "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution "
                "for function"
            )
        if requested > self.limiter.unreserved - self.limiter.min_unreserved and reserved is None:
            raise InvalidParameterValue(
                "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                f"below its minimum value of [{self.limiter.min_unreserved}]."
            )
        target = self.functions.get(name, qualifier).version
        for other in others:
            if self._version_of(name, other.qualifier) == target:
                if qualifier.isdigit():
                    raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
                raise ResourceConflict(
                    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
                )
        config = ProvisionedConfig(name, qualifier, requested, time.time())
        self.store.put_provisioned(config)
        self.states[(name, qualifier)] = ProvisionedState()
        self.reconcile(name)
        return config

    def get_provisioned(
        self, identifier: str, qualifier: str
    ) -> tuple[ProvisionedConfig, ProvisionedState]:
        name, qualifier = self._target(identifier, qualifier)
        for config in self.store.list_provisioned(name):
            if config.qualifier == qualifier:
                return config, self.state(config)
        raise ProvisionedConcurrencyConfigNotFound(
            "No Provisioned Concurrency Config found for this function"
        )

    def delete_provisioned(self, identifier: str, qualifier: str) -> None:
        name, qualifier = self._target(identifier, qualifier)
        if not self.store.delete_provisioned(name, qualifier):
            raise ProvisionedConcurrencyConfigNotFound(
                "No Provisioned Concurrency Config found for this function"
            )
        self.states.pop((name, qualifier), None)
        self.reconcile(name)

    def list_provisioned(self, identifier: str) -> list[tuple[ProvisionedConfig, ProvisionedState]]:
        name = self._function(identifier)
        return [(c, self.state(c)) for c in self.store.list_provisioned(name)]

    def state(self, config: ProvisionedConfig) -> ProvisionedState:
        return self.states.setdefault((config.function, config.qualifier), ProvisionedState())

    def start(self) -> None:
        """Bring every stored provisioned concurrency config up (at server start)."""
        for name in sorted({c.function for c in self.store.list_provisioned()}):
            self.reconcile(name)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def reconcile(self, name: str) -> None:
        """Make the pool's provisioned instances of `name` match its configs (in the background;
        aliases are followed to the version they point at now)."""
        self._dirty.add(name)
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.get_running_loop().create_task(self._reconcile(name))

    async def _reconcile(self, name: str) -> None:
        while name in self._dirty:
            self._dirty.discard(name)
            try:
                await self._apply(name)
            except Exception:
                log.exception("provisioning %s failed", name)

    async def _apply(self, name: str) -> None:
        wanted: dict[str, tuple[FunctionRecord, int]] = {}  # version -> (record, instances)
        shares: dict[str, list[tuple[str, int]]] = {}  # qualifier -> [(version, instances)]
        for config in self.store.list_provisioned(name):
            try:
                split = self._split(name, config)
            except EmberError:
                continue
            if any(record.version == LATEST for record, _ in split):  # an alias moved to $LATEST
                state = self.states.setdefault((name, config.qualifier), ProvisionedState())
                state.status, state.reason, state.allocated = (
                    "FAILED",
                    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
                    0,
                )
                continue
            shares[config.qualifier] = [(record.version, count) for record, count in split]
            for record, count in split:
                wanted[record.version] = (
                    record,
                    wanted.get(record.version, (record, 0))[1] + count,
                )
        allocated: dict[str, int] = {}
        failures: dict[str, str] = {}
        for version, (record, count) in wanted.items():
            if self._version_of(name, version) is None:  # deleted while earlier ones started
                continue
            failure = await self.pool.provision(record, self.functions.task_dir(record), count)
            allocated[version] = self.pool.provisioned_count(record)
            if failure is not None:
                failures[version] = failure
            log.info("%s:%s: %d provisioned instances", name, version, allocated[version])
        for qualifier, parts in shares.items():
            state = self.states.setdefault((name, qualifier), ProvisionedState())
            state.allocated = sum(min(count, allocated.get(version, 0)) for version, count in parts)
            failure = next((failures[version] for version, _ in parts if version in failures), None)
            state.status, state.reason = (
                ("FAILED", failure) if failure is not None else ("READY", None)
            )
        for version in self._provisioned_versions(name) - set(wanted):
            with contextlib.suppress(EmberError):
                record = self.functions.get(name, version)
                await self.pool.provision(record, self.functions.task_dir(record), 0)

    def _split(self, name: str, config: ProvisionedConfig) -> list[tuple[FunctionRecord, int]]:
        """The versions a config keeps instances of, and how many each: a version's config all
        on it; an alias's on its version, or shared by its routing weights (as Lambda does)."""
        primary = self.functions.get(name, config.qualifier)
        alias = None if config.qualifier.isdigit() else self.functions.alias(name, config.qualifier)
        if alias is None or not alias.weights:
            return [(primary, config.requested)]
        extra_version, weight = next(iter(alias.weights.items()))
        extra = round(config.requested * weight)
        split = [
            (primary, config.requested - extra),
            (self.functions.get(name, extra_version), extra),
        ]
        return [(record, count) for record, count in split if count > 0]

    def _provisioned_versions(self, name: str) -> set[str]:
        return {
            key.version
            for key, group in self.pool.groups.items()
            if key.name == name and group.provisioned
        }

    # -- helpers -------------------------------------------------------------------------

    def _removed(self, name: str, version: str | None) -> None:
        if version is None:
            self.limiter.reserve(name, None)
            for key in [k for k in self.states if k[0] == name]:
                del self.states[key]
        else:
            self.states.pop((name, version), None)

    def _function(self, identifier: str) -> str:
        ref = self.functions.parse_ref(identifier)
        return self.functions.get(ref.name).name

    def _version_of(self, name: str, qualifier: str) -> str | None:
        try:
            return self.functions.get(name, qualifier).version
        except EmberError:
            return None

    def _target(self, identifier: str, qualifier: str) -> tuple[str, str]:
        """A provisioned concurrency config's (function, qualifier): a version or an alias."""
        ref = self.functions.parse_ref(identifier)
        qualifier = self.functions.qualifier_of(identifier, qualifier) or LATEST
        if qualifier == LATEST:
            raise InvalidParameterValue(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        try:
            record = self.functions.get(ref.name, qualifier)
        except ResourceNotFound:
            self.functions.get(ref.name)  # Function not found: <unqualified arn> first
            raise
        if record.version == LATEST:
            raise InvalidParameterValue(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        return ref.name, qualifier
