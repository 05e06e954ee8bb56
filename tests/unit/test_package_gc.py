"""Garbage collection of stored code against a real store and package directory."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_zip
from ember.functions.layers import LayerVersion
from ember.functions.model import LATEST, FunctionRecord, LayerRef
from ember.functions.package_gc import PackageCollector
from ember.functions.packages import PackageStore
from ember.settings import Limits
from ember.store.sqlite import SqliteStore

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def parts(tmp_path: Path) -> tuple[PackageStore, SqliteStore, PackageCollector]:
    packages = PackageStore(tmp_path / "code", Limits())
    store = SqliteStore(tmp_path / "ember.sqlite3")
    return packages, store, PackageCollector(packages, store)


def record(
    name: str, sha: str, version: str = LATEST, layers: tuple[LayerRef, ...] = ()
) -> FunctionRecord:
    return FunctionRecord(
        name=name,
        version=version,
        runtime=RUNTIME,
        role="r",
        handler="app.handler",
        code_sha256=sha,
        code_size=1,
        layers=layers,
        revision_id=name + version,
    )


def stored(packages: PackageStore, files: dict[str, str]) -> str:
    sha = packages.put(make_zip(files)).sha256
    packages.unpack(sha, RUNTIME, None)
    return sha


def listing(packages: PackageStore) -> set[str]:
    return {p.name for p in packages.zips.iterdir()} | {p.name for p in packages.tasks.iterdir()}


def test_unreferenced_code_goes_and_referenced_code_stays(
    parts: tuple[PackageStore, SqliteStore, PackageCollector],
) -> None:
    packages, store, gc = parts
    kept, dropped = (
        stored(packages, {"app.py": "a = 1\n" * 1000}),
        stored(packages, {"app.py": "b = 2\n" * 1000}),
    )
    store.create_function(record("f", kept))
    result = gc.collect()
    assert result.zips == [dropped]
    assert result.trees == [f"{dropped}-{RUNTIME}"]
    assert result.bytes_freed > 0
    assert listing(packages) == {f"{kept}.zip", f"{kept}-{RUNTIME}"}
    assert gc.collect().bytes_freed == 0  # nothing more to do


def test_published_versions_and_layers_keep_their_code(
    parts: tuple[PackageStore, SqliteStore, PackageCollector],
) -> None:
    packages, store, gc = parts
    old, new = stored(packages, {"app.py": "1"}), stored(packages, {"app.py": "2"})
    layer_zip, orphan_layer = (
        stored(packages, {"python/l.py": "1"}),
        stored(packages, {"python/o.py": "1"}),
    )
    layers = (LayerRef("arn:aws:lambda:us-east-1:000000000000:layer:l:1", 1, layer_zip),)
    composed = packages.compose((layer_zip,), RUNTIME, None)
    store.create_function(record("f", new, layers=layers))
    store.publish_version(
        record("f", old), None, lambda r, n: dataclasses.replace(r, version=n, code_sha256=old)
    )
    store.publish_layer_version(LayerVersion("other", 0, orphan_layer, 1, 1))
    gc.collect()
    # a layer version keeps its zip; a function's layers keep theirs and their composition
    assert listing(packages) >= {
        f"{old}.zip",
        f"{new}.zip",
        f"{layer_zip}.zip",
        f"{orphan_layer}.zip",
        composed.name,
    }
    store.delete_function("f")
    gc.collect()
    assert listing(packages) == {f"{orphan_layer}.zip"}


def test_held_code_and_mounted_trees_are_kept(
    parts: tuple[PackageStore, SqliteStore, PackageCollector],
) -> None:
    packages, _, gc = parts
    held, mounted = stored(packages, {"app.py": "1"}), stored(packages, {"app.py": "2"})
    with packages.holding(packages.names_for(held, RUNTIME)):
        gc.collect(mounted={f"{mounted}-{RUNTIME}"})
        assert listing(packages) == {f"{held}.zip", f"{held}-{RUNTIME}", f"{mounted}-{RUNTIME}"}
    gc.collect()
    assert listing(packages) == set()


def test_staging_in_use_is_kept_and_leftovers_are_swept(
    parts: tuple[PackageStore, SqliteStore, PackageCollector],
) -> None:
    packages, _, gc = parts
    (packages.tasks / ".unpack-crashed").mkdir()
    (packages.zips / ".upload-crashed").write_bytes(b"x" * 4096)
    (packages.tasks / ".gc-1234-old").mkdir()
    with packages._staged(packages.tasks, ".unpack-", directory=True) as building:
        result = gc.collect()
        assert building.exists()
    assert result.leftovers == 3
    assert listing(packages) == set()


def test_a_request_reusing_code_the_collector_drops_gets_it_back(
    parts: tuple[PackageStore, SqliteStore, PackageCollector],
) -> None:
    """CreateFunction's order (hold, put, unpack, store) against collections running all the
    time: every stored record's code exists at the end of its request."""
    packages, store, gc = parts
    data = make_zip({"app.py": "x = 1\n"})
    stop = threading.Event()

    def collecting() -> None:
        while not stop.is_set():
            gc.collect()

    collector = threading.Thread(target=collecting)
    collector.start()
    try:
        for i in range(60):
            if i % 2:
                packages.put(data)  # stored before the request holds it: the collector may take it
            sha = packages.check(data)[0].sha256
            with packages.holding(packages.names_for(sha, RUNTIME)):
                packages.put(data)
                packages.unpack(sha, RUNTIME, None)
                store.create_function(record(f"f{i}", sha))
            assert packages.zip_path(sha).exists() and packages.task_dir(sha, RUNTIME).exists()
            store.delete_function(f"f{i}")
            time.sleep(0.001)
    finally:
        stop.set()
        collector.join()
