"""PackageStore.compose: a function's layers unpacked in order into one immutable /opt tree."""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from ember.errors import InvalidParameterValue
from ember.functions.packages import PackageStore
from ember.settings import Limits

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


def layer(
    files: dict[str, str] | None = None,
    links: dict[str, str] | None = None,
    dirs: tuple[str, ...] = (),
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in dirs:
            archive.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), "")
        for name, content in (files or {}).items():
            archive.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> PackageStore:
    return PackageStore(tmp_path / "code", Limits())


def compose(store: PackageStore, *zips: bytes, interpreter: str | None = None) -> Path:
    shas = tuple(store.put(data).sha256 for data in zips)
    return store.compose(shas, RUNTIME, interpreter)


def test_later_layers_overwrite_and_merge(store: PackageStore) -> None:
    root = compose(
        store,
        layer(
            {"python/a.py": "A = 1\n", "python/shared.py": "WHO = 1\n", "bin/tool": "#!/bin/sh\n"}
        ),
        layer({"python/shared.py": "WHO = 2\n", "lib/libx.so": "x"}),
    )
    assert root.parent == store.tasks and root.name.startswith("layers-")
    assert (root / "python/a.py").read_text() == "A = 1\n"
    assert (root / "python/shared.py").read_text() == "WHO = 2\n"
    assert (root / "bin/tool").exists() and (root / "lib/libx.so").exists()
    assert oct(root.stat().st_mode & 0o777) == "0o755"


def test_composition_is_content_addressed_by_order(store: PackageStore) -> None:
    one, two = layer({"f": "1"}), layer({"f": "2"})
    forward = compose(store, one, two)
    backward = compose(store, two, one)
    assert forward != backward
    assert (forward / "f").read_text() == "2" and (backward / "f").read_text() == "1"
    assert compose(store, one, two) == forward  # built once
    assert not [p for p in store.tasks.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_later_file_replaces_a_link_and_a_directory(store: PackageStore) -> None:
    root = compose(
        store,
        layer(
            {"data/real.py": "R = 1\n", "python/pkg/__init__.py": ""},
            links={"python/mod.py": "../data/real.py"},
        ),
        layer({"python/mod.py": "M = 2\n", "python/pkg": "now a file"}),
    )
    assert not os.path.islink(root / "python/mod.py")
    assert (root / "python/mod.py").read_text() == "M = 2\n"
    assert (root / "data/real.py").read_text() == "R = 1\n"  # never written through the link
    assert (root / "python/pkg").read_text() == "now a file"


def test_a_later_link_cannot_lead_an_earlier_one_out(store: PackageStore) -> None:
    # Alone, each layer is fine: s -> d/p/.. resolves to d while d/p is a file.
    first = layer({"d/p": "file"}, links={"s": "d/p/.."})
    second = layer(links={"d/p": ".."})
    compose(store, first)
    with pytest.raises(InvalidParameterValue):
        compose(store, first, second)
    assert not [p for p in store.tasks.iterdir() if p.name.startswith(".")]


def test_the_unzipped_limit_counts_all_layers(tmp_path: Path) -> None:
    store = PackageStore(tmp_path / "code", dataclasses.replace(Limits(), unzipped_bytes=1000))
    with pytest.raises(InvalidParameterValue):
        compose(store, layer({"a": "x" * 600}), layer({"b": "y" * 600}))


def test_pyc_compiled_for_opt(store: PackageStore) -> None:
    root = compose(
        store,
        layer({"python/m.py": "def f():\n    raise ValueError\n"}),
        interpreter=sys.executable,
    )
    cached = list((root / "python/__pycache__").glob("m.cpython-*.pyc"))
    assert cached
    assert b"/opt/python/m.py" in cached[0].read_bytes()


def test_verify_extract_refuses_links_out(store: PackageStore) -> None:
    sha = store.put(layer(links={"python/etc": "../../etc"})).sha256
    with pytest.raises(InvalidParameterValue):
        store.verify_extract(sha)
    assert store.declared_size(store.put(layer({"a": "12345"})).sha256) == 5
