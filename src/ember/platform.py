"""The composition root: builds every part from Settings once and owns their lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

from ember.dispatch.async_dispatcher import AsyncDispatcher
from ember.dispatch.concurrency import ConcurrencyControls, ConcurrencyLimiter
from ember.dispatch.event_queue import EventQueue
from ember.dispatch.invoker import Invoker
from ember.functions.access_keys import AccessKeys
from ember.functions.event_configs import EventConfigService
from ember.functions.function_urls import FunctionUrlService
from ember.functions.package_gc import Collected, PackageCollector
from ember.functions.packages import PackageStore
from ember.functions.policies import PolicyService
from ember.functions.service import FunctionService
from ember.functions.tags import TagService
from ember.functions.versions import VersionService
from ember.observe.logs import LogStore
from ember.observe.metrics import Metrics
from ember.observe.series import MinuteSeries, SeriesFile
from ember.observe.store_writer import StoreWriter
from ember.observe.traces import TraceRecorder
from ember.runtime_catalog import Runtime, discover
from ember.sandbox.sandbox import SandboxManager
from ember.settings import Settings
from ember.store.data_files import DATABASES, DataFileWatch, check_at_start
from ember.store.reserve import SpaceReserve
from ember.store.sqlite import SqliteStore
from ember.worker import runtime_sdk
from ember.worker.pool import WorkerPool, interpreter_of

log = logging.getLogger(__name__)

LOG_SWEEP_INTERVAL_S = 300
DATA_FILE_CHECK_S = 1.0  # how often the data files' inodes are compared (a few stat calls)
RESERVE_CHECK_S = 10.0  # how often a released space reserve is made again, when there is room


def _secret(path: Path) -> bytes:
    """A per-installation key (signs code download URLs); created on first start."""
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _unix_listener(path: Path) -> socket.socket:
    """The API's Unix socket: the relays of sandboxes' 127.0.0.1:<port> connect here."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)  # only the platform's relays (and root) connect
    listener.listen(1024)
    return listener


class Platform:
    def __init__(self, settings: Settings, runtimes: dict[str, Runtime] | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Missing, orphaned or corrupt databases stop the start here (DataFileError names them).
        self.data_check = check_at_start(settings.data_dir)
        self.data_files = DataFileWatch()
        self.reserve = SpaceReserve(settings.data_dir)
        self.secret = _secret(settings.data_dir / "secret.key")
        self.store = SqliteStore(settings.db_path, self.data_files, self.reserve)
        self.access_keys = AccessKeys(self.store, settings)
        self.packages = PackageStore(settings.code_dir, settings.limits)
        self.runtimes = discover() if runtimes is None else runtimes
        self.functions = FunctionService(settings, self.store, self.packages, self.runtimes)
        # Log and trace rows are stored by a writer process, off the event loop's GIL.
        self.store_writer = StoreWriter(
            {
                "logs": settings.data_dir / "logs.sqlite3",
                "traces": settings.data_dir / "traces.sqlite3",
            }
        )
        self.logs = LogStore(settings.data_dir / "logs.sqlite3", writer=self.store_writer)
        self.api_socket = settings.data_dir / "api.sock"
        self.api_listener = _unix_listener(self.api_socket)
        self.sandboxes = SandboxManager(
            settings.data_dir / "sandbox",
            tasks_root=self.packages.tasks,
            extra_binds=runtime_sdk.binds(),
            api_port=settings.port,
            pool_size=settings.sandbox_pool,
            pids_max=settings.limits.pids_max,
            nofile=settings.limits.nofile,
            tmp_on_disk=settings.tmp_storage == "disk",
            tmp_max_mb=settings.limits.ephemeral_max_mb,
        )
        self.pool = WorkerPool(settings, self.sandboxes, self.runtimes, self.api_socket)
        self.sandboxes.reclaim = self.pool.reclaim_idle  # a /tmp that does not fit on disk
        self.pool.opt_dirs = self.functions.opt_dir  # layers, composed, at /opt
        self.pool.role_credentials = self.access_keys.function_environment()
        self.functions.change_listeners.append(self.pool.retire)
        self.functions.removal_listeners.append(self.pool.remove)
        self._background: list[asyncio.Task[None]] = []
        self.invoker = Invoker(
            self.functions,
            self.pool,
            self.logs,
            ConcurrencyLimiter(
                settings.limits.account_concurrency, settings.limits.min_unreserved_concurrency
            ),
            settings.region,
        )
        self.traces = TraceRecorder(
            settings.data_dir / "traces.sqlite3", settings.otlp_endpoint, writer=self.store_writer
        )
        self.store_writer.start()  # after both stores have applied their migrations
        if settings.hooks:
            self.invoker.hooks.append(self.traces.record)
        self.versions = VersionService(self.functions, self.store)
        self.concurrency = ConcurrencyControls(
            self.functions, self.store, self.invoker.limiter, self.pool
        )
        self.event_configs = EventConfigService(self.functions, self.store)
        self.policies = PolicyService(self.functions, self.store)
        self.tags = TagService(self.functions, self.store)
        self.function_urls = FunctionUrlService(self.functions, self.store)
        self.functions.change_listeners += [self.policies.forget, self.function_urls.forget]
        self.functions.removal_listeners += [self.policies.removed, self.function_urls.removed]
        self.event_queue = EventQueue(settings.data_dir / "queue.sqlite3", self.data_files)
        self.dispatcher = AsyncDispatcher(
            self.event_queue,
            self.invoker,
            self.functions,
            self.event_configs,
            max_in_flight=settings.async_concurrency,
            retry_base_s=settings.async_retry_base_s,
        )
        self.metrics = Metrics(
            MinuteSeries(),
            self.pool,
            self.sandboxes,
            self.invoker.limiter,
            self.dispatcher,
            SeriesFile(settings.data_dir / "metrics.sqlite3"),
        )
        if settings.hooks:  # off only to measure what the hooks cost (bench/hooks_cost.py)
            self.invoker.hooks.append(self.metrics.observe)
        for name in DATABASES:  # all open now, in WAL mode: their inodes are the ones to keep
            self.data_files.watch(settings.data_dir / name)
        self.reserve.ensure()
        self.code_gc = PackageCollector(
            self.packages,
            self.store,
            instance_pids=lambda: [instance.sandbox.pid for instance in self.pool.live],
            after=self._code_collected,
        )
        self.functions.collect = self.packages.on_leftover = self.code_gc.request
        self.code_gc.collect()  # nothing runs yet: whatever no record uses goes now

    def _code_collected(self, collected: Collected) -> None:
        self.functions.forget_dirs(set(collected.trees))
        self.reserve.ensure()

    async def start(self) -> None:
        """Start background parts: the idle reaper, zygotes and blank sandboxes."""
        self.pool.start()
        self.concurrency.start()
        self.traces.start()
        self.dispatcher.start()
        self.metrics.start()
        self.code_gc.start()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._prepare_sandboxes()),
            loop.create_task(self._sweep_logs()),
            loop.create_task(self._watch_data_files()),
        ]

    async def _watch_data_files(self) -> None:
        """Notice a data file deleted or replaced under the running server (writes are then
        refused); make the space reserve again once there is room."""
        ticks = 0
        while True:
            await asyncio.sleep(DATA_FILE_CHECK_S)
            self.data_files.check_all()
            ticks += 1
            if ticks % int(RESERVE_CHECK_S / DATA_FILE_CHECK_S) == 0 and not self.reserve.held:
                await asyncio.to_thread(self.reserve.ensure)

    async def _sweep_logs(self) -> None:
        """Enforce log groups' retention periods."""
        while True:
            await asyncio.sleep(LOG_SWEEP_INTERVAL_S)
            try:
                await asyncio.to_thread(self.logs.sweep_retention)
            except Exception:
                log.exception("log retention sweep failed")

    async def _prepare_sandboxes(self) -> None:
        for runtime in self.runtimes.values():
            try:
                await self.sandboxes.prepare(interpreter_of(runtime))
            except Exception:
                log.exception("could not prepare %s sandboxes", runtime.name)
        sdk = [source for source, _ in runtime_sdk.binds()]
        await runtime_sdk.precompile((r.executable for r in self.runtimes.values()), sdk)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.code_gc.stop()
        with contextlib.suppress(Exception):
            await self.dispatcher.stop()
        with contextlib.suppress(Exception):
            await self.concurrency.stop()
        with contextlib.suppress(Exception):
            await self.pool.stop()
        with contextlib.suppress(Exception):
            await self.metrics.stop()
        self.logs.close()
        self.traces.close()
        self.store_writer.close()
        self.event_queue.close()
        self.store.close()
        self.api_listener.close()
