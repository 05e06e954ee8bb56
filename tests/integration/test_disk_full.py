"""A full disk, for real: the data dir of a server is a small tmpfs this test mounts and fills.

Every write that needs space is refused with an AWS-shaped error that says the disk is full
(code: CodeStorageExceededException; an asynchronous event: 503 ServiceException), nothing
half-written stays behind, DeleteFunction still works (and its code is reclaimed), and once
there is space again everything works as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from asyncing import marked, wait_for

from conftest import LiveServer, free_port, make_zip
from invoking import deploy
from mounts import tmpfs

MARKER = "def handler(event, context):\n    print('RAN ' + event['id'])\n    return event['id']\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "data", 64) as mountpoint:
        yield mountpoint


def fill(path: Path) -> None:
    """Write into `path` until the file system has not one page left."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * size):
                    pass


def refused(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def stored_code(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "code" / "zips").iterdir()} | {
        p.name for p in (data_dir / "code" / "tasks").iterdir()
    }


def settles(expected: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not expected():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_full_disk_is_reported_cleaned_up_and_recovered_from(small_disk: Path) -> None:
    live = LiveServer(small_disk, free_port())
    live.start()
    try:
        lam = live.client("lambda")
        kept = deploy(lam, MARKER, "kept")
        doomed = deploy(lam, {"app.py": MARKER, "big.bin": os.urandom(2 << 20)}, "doomed")
        layer = lam.publish_layer_version(
            LayerName="lib", Content={"ZipFile": make_zip({"python/l.py": "x=1"})}
        )
        assert (live.data_dir / "reserved-space").exists()
        before = stored_code(live.data_dir)

        filler = small_disk / "filler"
        fill(filler)
        code = make_zip({"app.py": MARKER, "pad.bin": os.urandom(100_000)})
        for call in (
            lambda: lam.create_function(
                FunctionName="new-one",
                Runtime="python3.12",
                Handler="app.handler",
                Role="arn:aws:iam::000000000000:role/r",
                Code={"ZipFile": code},
            ),
            lambda: lam.update_function_code(FunctionName=kept, ZipFile=code),
            lambda: lam.publish_layer_version(LayerName="lib", Content={"ZipFile": code}),
        ):
            status, error, message = refused(call)
            assert (status, error) == (400, "CodeStorageExceededException"), message
            assert "full" in message and str(small_disk) in message
        status, error, message = refused(
            lambda: lam.invoke(
                FunctionName=kept,
                InvocationType="Event",
                Payload=json.dumps({"id": "full", "pad": "x" * 200_000}),
            )
        )
        assert (status, error) == (503, "ServiceException"), message
        assert "disk is full" in message and str(small_disk) in message
        # Nothing half-written: no staging file, no new zip or tree.
        settles(
            lambda: stored_code(live.data_dir) == before,
            f"{stored_code(live.data_dir)} != {before}",
        )
        # What is stored still runs.
        assert (
            json.loads(lam.invoke(FunctionName=kept, Payload=b'{"id": "sync"}')["Payload"].read())
            == "sync"
        )

        # Deleting works on the full disk, and gives the code's space back.
        lam.delete_function(FunctionName=doomed)
        settles(
            lambda: len(stored_code(live.data_dir)) == len(before) - 2,
            "the deleted function's code stays",
        )
        lam.delete_layer_version(LayerName="lib", VersionNumber=layer["Version"])

        # Space again: everything works, and the refused event never runs.
        filler.unlink()
        created = lam.create_function(
            FunctionName="new-one",
            Runtime="python3.12",
            Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/r",
            Code={"ZipFile": code},
        )
        assert created["CodeSha256"]
        assert (
            json.loads(lam.invoke(FunctionName="new-one", Payload=b'{"id": "x"}')["Payload"].read())
            == "x"
        )
        lam.update_function_code(FunctionName=kept, ZipFile=code)
        lam.publish_layer_version(LayerName="lib", Content={"ZipFile": code})
        assert (
            lam.invoke(
                FunctionName=kept, InvocationType="Event", Payload=json.dumps({"id": "after"})
            )["StatusCode"]
            == 202
        )
        wait_for(
            "the event after the disk was freed",
            lambda: "after" in marked(live.data_dir, kept, "RAN "),
        )
        assert "full" not in marked(live.data_dir, kept, "RAN ")
        settles(
            lambda: (live.data_dir / "reserved-space").exists(), "the space reserve is made again"
        )
    finally:
        live.stop()
