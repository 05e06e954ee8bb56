"""The composition root: builds every part from Settings once and owns their lifetimes."""

from __future__ import annotations

import secrets
from pathlib import Path

from ember.functions.packages import PackageStore
from ember.functions.service import FunctionService
from ember.runtime_catalog import Runtime, discover
from ember.settings import Settings
from ember.store.sqlite import SqliteStore


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

    async def start(self) -> None:
        """Start background parts (worker pools, pollers)."""

    async def stop(self) -> None:
        self.store.close()
