"""Stored code nothing uses any more is collected by a real server; code a running instance has
mounted, or a concurrent CreateFunction reuses, is not."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import LiveServer, create, make_zip
from invoking import DEFAULT_RUNTIME, deploy, unique

SLOW = """
import time

def handler(event, context):
    time.sleep(event["sleep"])
    import late  # read from /var/task only now
    return late.VALUE
"""
HELLO = "def handler(event, context):\n    return 'ok'\n"


def stored(data_dir: Path) -> set[str]:
    return {p.name for kind in ("zips", "tasks") for p in (data_dir / "code" / kind).iterdir()}


def hex_sha(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


def disk_usage(path: Path) -> int:
    return sum(
        os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(path) for f in files
    )


def eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_deleted_functions_and_layers_give_their_code_back(server: LiveServer) -> None:
    lam = server.client("lambda")
    code_dir = server.data_dir / "code"
    layer = lam.publish_layer_version(
        LayerName=unique("gclayer"),
        Content={"ZipFile": make_zip({"python/big.bin": os.urandom(1 << 20)})},
    )
    layer_sha = hex_sha(layer["Content"]["CodeSha256"])
    composed = f"layers-{hashlib.sha256(layer_sha.encode()).hexdigest()}-{DEFAULT_RUNTIME}"
    names = [
        deploy(
            lam,
            {"app.py": HELLO, "big.bin": os.urandom(2 << 20)},
            "gc",
            Layers=[layer["LayerVersionArn"]],
            Publish=True,
        )
        for _ in range(3)
    ]
    shas = [hex_sha(lam.get_function(FunctionName=n)["Configuration"]["CodeSha256"]) for n in names]
    mine = {
        *(f"{s}.zip" for s in shas),
        *(f"{s}-{DEFAULT_RUNTIME}" for s in shas),
        composed,
        f"{layer_sha}.zip",
    }
    assert mine <= stored(server.data_dir)
    used = disk_usage(code_dir)
    for name in names:
        assert lam.invoke(FunctionName=name)["StatusCode"] == 200
        lam.delete_function(FunctionName=name)  # $LATEST and version 1
    eventually(
        lambda: stored(server.data_dir) & mine == {f"{layer_sha}.zip"},
        "deleted functions' code stays",
    )
    print(
        f"code GC reclaimed {used - disk_usage(code_dir)} of {used} bytes"
    )  # the layer's zip stays
    lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])
    eventually(lambda: not stored(server.data_dir) & mine, "the deleted layer version's zip stays")


def test_a_running_instance_keeps_its_code_until_it_is_done(server: LiveServer) -> None:
    lam = server.client("lambda")
    name = deploy(lam, {"app.py": SLOW, "late.py": "VALUE = 'still here'\n"}, "gcslow")
    tree = f"{hex_sha(lam.get_function(FunctionName=name)['Configuration']['CodeSha256'])}-{DEFAULT_RUNTIME}"
    result: dict[str, Any] = {}

    def invoke() -> None:
        answer = server.client("lambda").invoke(FunctionName=name, Payload=json.dumps({"sleep": 2}))
        result.update(
            payload=json.loads(answer["Payload"].read()), error=answer.get("FunctionError")
        )

    call = threading.Thread(target=invoke)
    call.start()
    time.sleep(0.8)  # it is running, with its code mounted at /var/task
    lam.delete_function(FunctionName=name)  # a collection runs now, and must leave its tree
    call.join()
    assert result == {"payload": "still here", "error": None}
    # Once the instance is gone, the next collection takes the tree.
    lam.delete_function(FunctionName=deploy(lam, HELLO, "gcnudge"))
    eventually(lambda: tree not in stored(server.data_dir), "the finished instance's tree stays")


def test_create_function_reusing_code_being_collected_always_works(server: LiveServer) -> None:
    """One thread creates and deletes functions with a zip while another creates functions with
    the same zip and invokes them: each delete asks for a collection that finds the zip unused
    at moments when the other thread's request is storing it."""
    lam = server.client("lambda")
    files = {"app.py": HELLO + f"# {uuid.uuid4()}\n"}
    failures: list[str] = []

    def churn() -> None:
        client = server.client("lambda")
        for i in range(12):
            name = unique(f"gcchurn{i}")
            create(client, name, files, runtime=DEFAULT_RUNTIME)
            client.delete_function(FunctionName=name)

    other = threading.Thread(target=churn)
    other.start()
    try:
        for i in range(12):
            name = unique(f"gcreuse{i}")
            create(lam, name, files, runtime=DEFAULT_RUNTIME)
            answer = lam.invoke(FunctionName=name)
            if answer.get("FunctionError") or json.loads(answer["Payload"].read()) != "ok":
                failures.append(name)
            lam.delete_function(FunctionName=name)
    finally:
        other.join()
    assert failures == []
