"""The composition root: builds every part from Settings once and owns their lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path

from ember.dispatch.concurrency import ConcurrencyLimiter
from ember.dispatch.invoker import Invoker
from ember.functions.packages import PackageStore
from ember.functions.service import FunctionService
from ember.observe.logs import LogStore
from ember.runtime_catalog import Runtime, discover
from ember.sandbox.sandbox import SandboxManager
from ember.settings import Settings
from ember.store.sqlite import SqliteStore
from ember.worker.pool import WorkerPool

log = logging.getLogger(__name__)


def _secret(path: Path) -> bytes:
    """A per-installation key (signs code download URLs); created on first start."""
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class Platform:
    def __init__(self, settings: Settings, runtimes: dict[str, Runtime] | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.secret = _secret(settings.data_dir / "secret.key")
        self.store = SqliteStore(settings.db_path)
        self.packages = PackageStore(settings.code_dir, settings.limits)
        self.runtimes = discover() if runtimes is None else runtimes
        self.functions = FunctionService(settings, self.store, self.packages, self.runtimes)
        self.logs = LogStore(settings.data_dir / "logs.sqlite3")
        self.api_socket = settings.data_dir / "api.sock"
        self.sandboxes = SandboxManager(
            settings.data_dir / "sandbox", settings.limits.pids_max, settings.limits.nofile
        )
        self.pool = WorkerPool(settings, self.sandboxes, self.runtimes, self.api_socket)
        self.functions.change_listeners.append(self.pool.retire)
        self.invoker = Invoker(
            self.functions,
            self.pool,
            self.logs,
            ConcurrencyLimiter(settings.limits.account_concurrency),
            settings.region,
        )

    async def start(self) -> None:
        """Start background parts: the idle reaper, and the zygotes (off the request path)."""
        self.pool.start()
        for runtime in self.runtimes.values():
            try:
                await asyncio.to_thread(self.sandboxes.prestart, runtime.executable)
            except Exception:
                log.exception("could not start the %s zygote", runtime.name)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.pool.stop()
        self.logs.close()
        self.store.close()
