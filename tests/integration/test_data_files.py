"""A real `ember server` and its data files: damaged or missing ones stop the start with a
message naming the file; one deleted or replaced while it runs stops writes (503), never a 202
or 201 for a write into a file that is gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from conftest import LiveServer, free_port
from invoking import deploy

HELLO = "def handler(event, context):\n    return 'hi'\n"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data", free_port())
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def refused_start(server: LiveServer) -> str:
    """Start the server expecting a refusal: its exit status is 1 and stderr says why."""
    env = {**os.environ, "EMBER_DATA_DIR": str(server.data_dir), "EMBER_PORT": str(server.port)}
    done = subprocess.run(
        [sys.executable, "-m", "ember", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_damaged_metadata_database_is_named_at_start(live: LiveServer) -> None:
    deploy(live.client("lambda"), HELLO)
    live.stop()
    path = live.data_dir / "ember.sqlite3"
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)  # the SQLite header
    message = refused_start(live)
    assert f"{path} is damaged" in message and "backup" in message and ".recover" in message


def test_deleted_metadata_beside_a_queue_is_refused_and_a_deleted_queue_too(
    live: LiveServer,
) -> None:
    deploy(live.client("lambda"), HELLO)
    live.stop()
    os.rename(live.data_dir / "ember.sqlite3", live.data_dir / "saved")
    message = refused_start(live)
    assert "ember.sqlite3 is missing" in message and "queue.sqlite3" in message
    os.rename(live.data_dir / "saved", live.data_dir / "ember.sqlite3")
    (live.data_dir / "queue.sqlite3").unlink()
    assert "touch" in refused_start(live)
    (live.data_dir / "queue.sqlite3").touch()  # the operator accepts the loss
    (live.data_dir / "logs.sqlite3").unlink()  # history: started empty
    live.start()
    assert live.client("lambda").list_functions()["Functions"]


def test_a_wal_left_without_its_database_is_refused(live: LiveServer) -> None:
    deploy(live.client("lambda"), HELLO)
    live.stop(signal.SIGKILL)  # no clean close: the -wal files stay
    wal = live.data_dir / "ember.sqlite3-wal"
    assert wal.exists()
    (live.data_dir / "ember.sqlite3").unlink()
    assert f"{wal} exists but its database" in refused_start(live)


def _status(call: Any) -> tuple[int, str, str]:
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        error = exc.response["Error"]
        return exc.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]
    return 200, "", ""


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_lost_while_running_stops_writes(live: LiveServer, how: str) -> None:
    lam = live.client("lambda")
    name = deploy(lam, HELLO)
    path = live.data_dir / "queue.sqlite3"
    if how == "deleted":
        path.unlink()
    else:
        shutil.copy(path, live.data_dir / "copy")
        os.replace(live.data_dir / "copy", path)
    # The very next accepted event would go into the lost file: it is refused, not a 202.
    status, code, message = _status(
        lambda: lam.invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({}).encode()
        )
    )
    assert (status, code) == (503, "ServiceException"), message
    assert str(path) in message and how in message
    # Every other write is refused too (the periodic check or the first write saw it) ...
    status, code, message = _status(
        lambda: lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    )
    assert (status, code) == (503, "ServiceException") and str(path) in message
    # ... while reads and synchronous invocations go on.
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "hi"
    deadline = time.monotonic() + 10
    while "while the server was running" not in live.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "while the server was running" in live.log()  # loud in the server's log
