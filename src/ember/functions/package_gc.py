"""Garbage collection of stored code: zips and unpacked trees nothing uses any more.

A zip (`code/zips/<sha256>.zip`) is kept while a function version or a layer version names it
(a function's layers count even after their layer version was deleted); an unpacked tree
(`code/tasks/<sha256>-<runtime>`, `code/tasks/layers-<key>-<runtime>`) while a function
version would mount it. Besides what the store references, a collection keeps:
- what a request holds (`PackageStore.holding`): CreateFunction, UpdateFunctionCode,
  UpdateFunctionConfiguration and PublishLayerVersion hold their code from before they write it
  until their record is stored, so a concurrent request reusing a sha256 the collector just
  found unreferenced either is seen holding it or, coming later, finds it gone and writes it
  again (the decision and the renames happen under the package store's lock);
- trees mounted by a live instance (read from its mount table, `/proc/<pid>/mountinfo`): an
  instance of a deleted version may still be running, and removing its tree would pull its
  code from under it.
Doomed entries are first renamed to `.gc-*` names (one atomic step each, under the lock), then
removed outside it. Staging entries (`.upload-*`, `.unpack-*`, ...) that no request has
registered are leftovers (a crash, or a removal that failed with EMFILE) and are removed too.

It runs at start, shortly after anything that can leave code unused (deletes, code, runtime
or layer changes, a failed request that had stored code) and every `INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ember.functions.packages import STAGING_PREFIXES, PackageStore
from ember.store.base import Store

log = logging.getLogger(__name__)

INTERVAL_S = 600.0
DELAY_S = 0.2  # after a request asks: requests that come in a burst share one collection
TRASH = ".gc-"


@dataclass
class Collected:
    zips: list[str] = field(default_factory=list)  # sha256s
    trees: list[str] = field(default_factory=list)  # directory names
    leftovers: int = 0  # staging entries no request owned
    bytes_freed: int = 0
    seconds: float = 0.0


def mounted_trees(pids: Iterable[int]) -> set[str]:
    """Names of the directories the given sandboxes have mounted (as /var/task or /opt)."""
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as table:
                for line in table:
                    fields = line.split(" ", 5)
                    if len(fields) > 4:
                        root = fields[3].replace("\\040", " ").removesuffix("//deleted")
                        names.add(os.path.basename(root))
        except OSError:
            continue  # gone already
    return names


class PackageCollector:
    def __init__(
        self,
        packages: PackageStore,
        store: Store,
        instance_pids: Callable[[], list[int]] = list,
        after: Callable[[Collected], None] | None = None,
    ) -> None:
        self.packages = packages
        self.store = store
        self.instance_pids = (
            instance_pids  # live sandboxes; called on the event loop (it reads the pool)
        )
        self.after = after  # told about every collection that removed something
        self.runs = 0
        self.total_freed = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- one collection --------------------------------------------------------------------

    def collect(self, mounted: set[str] | None = None) -> Collected:
        """Remove every zip and tree nothing uses (thread-safe against requests)."""
        started = time.perf_counter()
        result = Collected()
        packages = self.packages
        trash: list[Path] = []
        with packages.lock:
            held = set(packages.held)
            staging = set(packages.staging)
            refs = self.store.code_references()
            zips = refs.zips | held
            trees = {packages.task_dir(sha, runtime).name for sha, runtime in refs.task_trees}
            trees |= {packages.layers_dir(shas, runtime).name for shas, runtime in refs.layer_trees}
            trees |= held | (mounted or set())
            for directory, keep in ((packages.zips, zips), (packages.tasks, trees)):
                for entry in _entries(directory):
                    name = entry.name
                    if name.startswith("."):
                        if name.startswith(TRASH) or (
                            name.startswith(STAGING_PREFIXES) and name not in staging
                        ):
                            trash.append(Path(entry.path))
                            result.leftovers += 1
                        continue
                    key = name.removesuffix(".zip") if directory is packages.zips else name
                    if key in keep:
                        continue
                    doomed = directory / f"{TRASH}{secrets.token_hex(4)}-{name}"
                    try:
                        os.rename(entry.path, doomed)
                    except OSError:
                        continue
                    trash.append(doomed)
                    (result.zips if directory is packages.zips else result.trees).append(key)
        for path in trash:
            result.bytes_freed += _remove(path)
        if result.zips:
            with contextlib.suppress(Exception):
                self.store.forget_code_packages(result.zips)
        result.seconds = time.perf_counter() - started
        self.runs += 1
        self.total_freed += result.bytes_freed
        if result.zips or result.trees or result.leftovers:
            log.info(
                "code GC: removed %d zips, %d trees, %d leftovers (%d KiB) in %.3f s",
                len(result.zips),
                len(result.trees),
                result.leftovers,
                result.bytes_freed // 1024,
                result.seconds,
            )
            if self.after is not None:
                self.after(result)
        return result

    def collect_around(self, pids: list[int]) -> Collected:
        """A collection that keeps the trees the given sandboxes have mounted."""
        return self.collect(mounted_trees(pids))

    # -- when it runs ------------------------------------------------------------------------

    def request(self) -> None:
        """Ask for a collection soon (from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), INTERVAL_S)
                await asyncio.sleep(DELAY_S)
            self._wake.clear()
            try:
                pids = self.instance_pids()
                await asyncio.to_thread(self.collect_around, pids)
            except Exception:
                log.exception("code GC failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as found:
            return list(found)
    except OSError:
        return []


def _remove(path: Path) -> int:
    """Delete a file or tree; returns the bytes it held (what could be removed)."""
    size = 0
    if path.is_dir() and not path.is_symlink():
        for dirpath, _dirnames, filenames in os.walk(path):
            for name in filenames:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            size = os.lstat(path).st_blocks * 512
            os.unlink(path)
    return size
