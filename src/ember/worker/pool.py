"""Instances per function version: warm reuse, cold creation, freezing, retirement, idle expiry.

Instances are keyed by (function, version, revision): a code or configuration change gives new
invocations a new key, and `retire` destroys the old key's idle instances at once (busy ones
are destroyed when they are released). One invocation at a time per instance.

Provisioned instances (provisioned concurrency) are created ahead of demand, are never reaped
for idleness, and are handed out before any other warm instance of their key.

An instance released after an invocation may still have that invocation's billed duration open
(`Instance.settle`): it is settled before the instance is handed out again, when it is frozen,
or when it is destroyed. An instance can also destroy itself (a protocol violation, or work
after its result); the pool then forgets it (`_lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ember.functions.model import LATEST, FunctionRecord
from ember.runtime_catalog import Runtime
from ember.sandbox.sandbox import LANG_DIR, Interpreter, SandboxManager, SandboxSpec
from ember.settings import Settings
from ember.worker import api_relay
from ember.worker.instance import Instance, Line, Outcome

log = logging.getLogger(__name__)

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"


class InstanceKey(NamedTuple):  # a tuple: built and hashed several times per invocation
    name: str
    version: str
    revision_id: str


@dataclass
class _Group:
    idle: list[Instance] = field(default_factory=list)
    total: int = 0
    retired: bool = False
    provisioned: set[Instance] = field(default_factory=set)  # kept warm, never reaped
    provisioned_idle: list[Instance] = field(default_factory=list)


@dataclass
class Acquired:
    instance: Instance | None
    cold: bool
    init_ms: float | None = None
    init_failure: Outcome | None = None
    init_lines: list[Line] = field(default_factory=list)
    log_stream: str = ""  # the failed instance's stream when init failed


def interpreter_of(runtime: Runtime) -> Interpreter:
    return Interpreter(runtime.executable, runtime.prefix)


def log_stream_name(version: str) -> str:
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]{uuid.uuid4().hex}"


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        sandboxes: SandboxManager,
        runtimes: dict[str, Runtime],
        api_socket: Path | None,
    ) -> None:
        self.settings = settings
        self.sandboxes = sandboxes
        self.runtimes = runtimes
        self.api_socket = api_socket
        # A record's composed layers directory (mounted at /opt), None without layers.
        self.opt_dirs: Callable[[FunctionRecord], str | None] = lambda record: None
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, as Lambda sets a role's.
        self.role_credentials: dict[str, str] = {}
        self.groups: dict[InstanceKey, _Group] = {}
        self.live: set[Instance] = set()
        self.created = 0
        self.destroyed = 0
        self._reaper: asyncio.Task[None] | None = None

    def key(self, record: FunctionRecord) -> InstanceKey:
        return InstanceKey(record.name, record.version, record.revision_id)

    async def acquire(self, record: FunctionRecord, task_dir: str) -> Acquired:
        key = self.key(record)
        group = self.groups.setdefault(key, _Group())
        while group.provisioned_idle:
            instance = group.provisioned_idle.pop()
            instance.settle(check_runtime=False)  # its last invocation ends before the next starts
            if not instance.destroyed:
                return Acquired(instance, cold=False)
            group.provisioned.discard(instance)
            group.total -= 1
        while group.idle:
            instance = group.idle.pop()
            instance.settle(check_runtime=False)
            if not instance.destroyed:
                return Acquired(instance, cold=False)
            group.total -= 1
        group.total += 1
        try:
            return await self._create(record, task_dir)
        except BaseException:
            group.total -= 1
            raise

    def settle_next(self, record: FunctionRecord) -> None:
        """Settle the instance `acquire` would hand out next, if its last invocation is still
        open: that invocation is accounted (REPORT, hooks, its concurrency slot) before the next
        one takes a slot, as if it had been settled when the sandbox went idle."""
        group = self.groups.get(self.key(record))
        if group is None:
            return
        for stack in (group.provisioned_idle, group.idle):
            while stack and stack[-1].unsettled:
                instance = stack[-1]
                instance.settle(check_runtime=False)  # the warm path: CPU usage only
                if not instance.destroyed:
                    return
                if stack and stack[-1] is instance:  # not forgotten by _lost: drop it here
                    stack.pop()
                    group.total -= 1
                    group.provisioned.discard(instance)
            if stack:
                return

    def settle_function(self, name: str) -> bool:
        """Settle every idle instance of `name` whose last invocation is still open (their
        concurrency slots are still held); True if there was any."""
        found = False
        for key, group in list(self.groups.items()):
            if key.name == name:
                for instance in [*group.provisioned_idle, *group.idle]:
                    if instance.unsettled:
                        instance.settle()
                        found = True
        return found

    def release(self, record: FunctionRecord, instance: Instance, healthy: bool) -> None:
        key = self.key(record)
        group = self.groups.get(key)
        if group is None or group.retired or not healthy or instance.destroyed:
            self._destroy(instance)
            if group is not None:
                group.total -= 1
                group.provisioned.discard(instance)
                self._forget_if_empty(key, group)
            return
        instance.last_used = time.monotonic()
        if instance in group.provisioned:
            group.provisioned_idle.append(instance)
        else:
            group.idle.append(instance)
        instance.freeze(
            self.settings.freeze_delay_s
        )  # idle first: a freeze may settle and destroy it

    def discard(self, record: FunctionRecord) -> None:
        """An instance that never started still counted against the group."""
        group = self.groups.get(self.key(record))
        if group is not None:
            group.total -= 1

    def retire(self, name: str) -> None:
        """$LATEST of `name` changed: destroy its idle instances; busy ones go on release.
        (Published versions never change: their instances stay.)"""
        self.remove(name, LATEST)

    def remove(self, name: str, version: str | None) -> None:
        """Destroy the idle instances (provisioned ones too) of one version of `name`, or of
        every version; busy ones are destroyed on release."""
        for key, group in list(self.groups.items()):
            if key.name == name and (version is None or key.version == version):
                group.retired = True
                idle = group.idle + group.provisioned_idle
                for instance in idle:
                    self._destroy(instance)
                group.total -= len(idle)
                group.idle.clear()
                group.provisioned_idle.clear()
                group.provisioned.clear()
                self._forget_if_empty(key, group)

    async def provision(self, record: FunctionRecord, task_dir: str, count: int) -> str | None:
        """Keep `count` provisioned instances of `record`'s version: start the missing ones
        (concurrently) or let surplus ones go. Returns None, or why an instance could not start."""
        key = self.key(record)
        group = self.groups.get(key)
        if group is None or group.retired:
            group = self.groups[key] = _Group()
        while len(group.provisioned) > count:
            if group.provisioned_idle:
                instance = group.provisioned_idle.pop()
                self._destroy(instance)
                group.total -= 1
            else:  # busy: it becomes an on-demand instance when released
                instance = next(iter(group.provisioned))
            group.provisioned.discard(instance)
        missing = count - len(group.provisioned)
        if missing <= 0:
            self._forget_if_empty(key, group)
            return None
        group.total += missing
        results = await asyncio.gather(
            *(self._create(record, task_dir, PROVISIONED) for _ in range(missing)),
            return_exceptions=True,
        )
        failure: str | None = None
        for result in results:
            if isinstance(result, BaseException):
                group.total -= 1
                failure = failure or f"Ember could not start an instance: {result}"
            elif result.instance is None:  # init failed: _create discarded it already
                outcome = result.init_failure
                failure = failure or (
                    f"FUNCTION_ERROR_INIT_FAILURE: {outcome.error_type if outcome else 'Runtime.Unknown'}"
                )
            elif group.retired or self.groups.get(key) is not group:
                self._destroy(result.instance)
                group.total -= 1
            else:
                instance = result.instance
                instance.freeze(self.settings.freeze_delay_s)
                instance.last_used = time.monotonic()
                group.provisioned.add(instance)
                group.provisioned_idle.append(instance)
        self._forget_if_empty(key, group)
        return failure

    def provisioned_count(self, record: FunctionRecord) -> int:
        group = self.groups.get(self.key(record))
        return 0 if group is None or group.retired else len(group.provisioned)

    def _forget_if_empty(self, key: InstanceKey, group: _Group) -> None:
        if group.total <= 0 and not group.idle and self.groups.get(key) is group:
            del self.groups[key]

    def _destroy(self, instance: Instance) -> None:
        """Destroy an instance whose place in its group the caller takes care of."""
        instance.on_destroyed = None
        if instance in self.live:
            self.live.discard(instance)
            self.destroyed += 1
        with contextlib.suppress(Exception):
            instance.destroy()

    def _lost(self, key: InstanceKey, instance: Instance) -> None:
        """An instance destroyed itself: forget it if it was idle (a busy one is accounted for
        when its invocation releases it)."""
        if instance in self.live:
            self.live.discard(instance)
            self.destroyed += 1
        group = self.groups.get(key)
        if group is None:
            return
        for stack in (group.idle, group.provisioned_idle):
            if instance in stack:
                stack.remove(instance)
                group.total -= 1
                group.provisioned.discard(instance)
                self._forget_if_empty(key, group)
                return

    def idle_count(self) -> int:
        return sum(len(g.idle) for g in self.groups.values())

    async def _create(
        self, record: FunctionRecord, task_dir: str, init_type: str = ON_DEMAND
    ) -> Acquired:
        runtime = self.runtimes[record.runtime]
        stream = log_stream_name(record.version)
        marker = "\x1eember-" + secrets.token_hex(8)
        opt_dir = self.opt_dirs(record)
        spec = SandboxSpec(
            interpreter=interpreter_of(runtime),
            memory_mb=record.memory_size,
            tmp_mb=record.ephemeral_storage,
            task_dir=Path(task_dir),
            opt_dir=Path(opt_dir) if opt_dir else None,
            env=self._environment(record, runtime, stream, init_type),
            runtime_args={
                "handler": record.handler,
                "marker": marker,
                "function_name": record.name,
                "function_version": record.version,
                "memory_mb": record.memory_size,
                "log_group": record.effective_log_group,
                "log_stream": stream,
            },
        )
        started = time.monotonic()
        sandbox = await self.sandboxes.acquire(spec)
        self.created += 1
        instance = Instance(sandbox, marker, stream, self.settings.limits.sync_response_bytes)
        key = self.key(record)
        instance.on_destroyed = lambda lost: self._lost(key, lost)
        self.live.add(instance)
        try:
            if sandbox.api_listener is not None and self.api_socket is not None:
                instance.api_server = await api_relay.serve(sandbox.api_listener, self.api_socket)
            failure = await instance.start(timeout=max(10.0, float(record.timeout)))
        except BaseException:
            self._destroy(instance)
            raise
        init_ms = (time.monotonic() - started) * 1000
        if failure is not None:
            self._destroy(instance)
            self.discard(record)
            return Acquired(
                None,
                cold=True,
                init_ms=init_ms,
                init_failure=failure,
                init_lines=failure.lines,
                log_stream=stream,
            )
        sandbox.cgroup.limit_cpu()
        return Acquired(instance, cold=True, init_ms=init_ms, init_lines=instance.take_init_lines())

    def _environment(
        self, record: FunctionRecord, runtime: Runtime, stream: str, init_type: str = ON_DEMAND
    ) -> dict[str, str]:
        s = self.settings
        env = {
            "PATH": f"{LANG_DIR}/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin",
            "LD_LIBRARY_PATH": f"{LANG_DIR}/lib:/var/task/lib:/opt/lib",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(record.environment)
        env.update(
            {
                "_HANDLER": record.handler,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{record.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": record.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(record.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": record.version,
                "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
                "AWS_LAMBDA_LOG_GROUP_NAME": record.effective_log_group,
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_REGION": s.region,
                "AWS_DEFAULT_REGION": s.region,
                "LAMBDA_TASK_ROOT": "/var/task",
                "LAMBDA_RUNTIME_DIR": "/var/runtime",
                **self.role_credentials,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s.port}",
            }
        )
        env["AWS_LAMBDA_LOG_FORMAT"] = record.log_format
        if record.log_format == "JSON":
            env["AWS_LAMBDA_LOG_LEVEL"] = record.application_log_level or "INFO"
        return env

    def reclaim_idle(self) -> bool:
        """Destroy the least recently used idle instance (never a provisioned one), for what it
        holds (its /tmp's room on disk); False when there is none."""
        oldest: tuple[InstanceKey, _Group, Instance] | None = None
        for key, group in self.groups.items():
            for instance in group.idle:
                if oldest is None or instance.last_used < oldest[2].last_used:
                    oldest = (key, group, instance)
        if oldest is None:
            return False
        key, group, instance = oldest
        group.idle.remove(instance)
        group.total -= 1
        self._destroy(instance)
        self._forget_if_empty(key, group)
        return True

    async def reap_idle(self) -> int:
        """Destroy instances idle for longer than the idle timeout; returns how many."""
        cutoff = time.monotonic() - self.settings.idle_timeout_s
        reaped = 0
        for key, group in list(self.groups.items()):
            keep = [i for i in group.idle if i.last_used >= cutoff]
            for instance in group.idle:
                if instance.last_used < cutoff:
                    self._destroy(instance)
                    group.total -= 1
                    reaped += 1
            group.idle = keep
            self._forget_if_empty(key, group)
        return reaped

    def start(self) -> None:
        async def loop() -> None:
            interval = max(0.05, min(5.0, self.settings.idle_timeout_s / 4))
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.reap_idle()
                except Exception:
                    log.exception("idle reaper failed")

        self._reaper = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for instance in list(self.live):
            self._destroy(instance)
        self.groups.clear()
        await self.sandboxes.stop()
