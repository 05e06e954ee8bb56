"""`ember server` as a process: start, answer, stop on signals, keep state, guard its data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, create, free_port


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of the test's own, on its own data dir and port; stopped if still running."""
    server = LiveServer(tmp_path / "data", free_port())
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def get_json(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_health_answers_200(live: LiveServer) -> None:
    live.start()
    status, body = get_json(live.endpoint + "/health")
    assert status == 200
    assert body["status"] == "ok"


def test_ember_port_and_data_dir_variables_are_honoured(live: LiveServer) -> None:
    live.start()  # LiveServer passes EMBER_PORT and EMBER_DATA_DIR only, no flags
    assert get_json(f"http://127.0.0.1:{live.port}/health")[0] == 200
    assert (live.data_dir / "ember.sqlite3").exists()
    log = live.log()
    assert f"http://127.0.0.1:{live.port}" in log
    assert str(live.data_dir.resolve()) in log
    assert "boto3.client(" in log


def test_state_survives_a_restart(live: LiveServer) -> None:
    live.start()
    name = f"keep-{uuid.uuid4().hex[:10]}"
    created = create(
        live.client(),
        name,
        "def handler(e, c):\n    return 1\n",
        Timeout=42,
        Environment={"Variables": {"KEPT": "yes"}},
    )
    assert live.stop() == 0

    live.start()
    again = live.client().get_function_configuration(FunctionName=name)
    for key in (
        "FunctionArn",
        "RevisionId",
        "CodeSha256",
        "LastModified",
        "Timeout",
        "Environment",
    ):
        assert again[key] == created[key], key
    got = live.client().get_function(FunctionName=name)
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as response:
        assert response.status == 200
    assert live.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_server_cleanly(live: LiveServer, sig: int) -> None:
    live.start()
    assert live.stop(sig) == 0  # LiveServer.stop waits (bounded) for the process to exit
    # The port and the data dir are free again: a new server starts on both.
    live.start()
    assert get_json(live.endpoint + "/health")[0] == 200
    assert live.stop() == 0


def test_second_server_on_the_same_data_dir_is_refused(live: LiveServer) -> None:
    live.start()
    env = {**os.environ, "EMBER_DATA_DIR": str(live.data_dir), "EMBER_PORT": str(free_port())}
    second = subprocess.run(
        [sys.executable, "-m", "ember", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode != 0
    output = second.stdout + second.stderr
    assert "data directory" in output
    assert str(live.data_dir.resolve()) in output
    # The first server is unharmed.
    assert live.process is not None and live.process.poll() is None
    assert get_json(live.endpoint + "/health")[0] == 200
    assert live.stop() == 0


def test_the_default_data_dir_is_dot_ember_in_the_working_directory(tmp_path: Path) -> None:
    """The Quick start's `./ember server`: no --data-dir, a relative ./.ember, a real invoke."""
    import time

    import boto3

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env["EMBER_PORT"] = str(port)
    process = subprocess.Popen(
        [sys.executable, "-m", "ember", "server"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get_json(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.05)
        lam = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        create(
            lam, "hello", 'def handler(event, context):\n    return "Hello, " + event["username"]\n'
        )
        response = lam.invoke(FunctionName="hello", Payload=b'{"username": "Sally"}')
        assert response["Payload"].read() == b'"Hello, Sally"'
        assert "FunctionError" not in response
        assert (tmp_path / ".ember" / "ember.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
