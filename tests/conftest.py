"""Shared fixtures: a live `ember server` on 127.0.0.1 and boto3 clients pointed at it."""

from __future__ import annotations

import configparser
import io
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.credentials import Credentials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    data_dir: Path
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    nofile: int | None = None  # the server's RLIMIT_NOFILE (soft and hard), if not inherited

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "EMBER_DATA_DIR": str(self.data_dir),
            "EMBER_PORT": str(self.port),
            **self.extra_env,
        }
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ember", "server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if self.nofile is None else self._limit_nofile,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ember server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.process.kill()  # never leave a half-started server behind
        self.process.wait()
        raise RuntimeError(f"ember server did not answer /health in {timeout}s:\n{self.log()}")

    def _limit_nofile(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def credentials(self) -> Credentials:
        """The access key the server wrote to <data_dir>/credentials (profile `ember`)."""
        parser = configparser.ConfigParser()
        parser.read(self.data_dir / "credentials")
        profile = parser["ember"]
        return Credentials(profile["aws_access_key_id"], profile["aws_secret_access_key"])

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace")
            if self.log_path and self.log_path.exists()
            else ""
        )

    def client(self, service: str = "lambda", validate: bool = True, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=botocore.config.Config(
                parameter_validation=validate,
                retries={"max_attempts": 0},
                read_timeout=120,
                **config,
            ),
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the whole session (tests use unique function names)."""
    live = LiveServer(tmp_path_factory.mktemp("ember") / "data", free_port())
    live.start()
    yield live
    live.stop()


@pytest.fixture
def lam(server: LiveServer) -> Any:
    return server.client("lambda")


@pytest.fixture
def lam_raw(server: LiveServer) -> Any:
    """A client that skips botocore's own parameter checks, to reach the server's."""
    return server.client("lambda", validate=False)


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buf.getvalue()


ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def create(
    lam: Any,
    name: str,
    code: str | dict[str, str | bytes],
    handler: str = "app.handler",
    runtime: str = "python3.11",
    **kwargs: Any,
) -> dict[str, Any]:
    files = {"app.py": code} if isinstance(code, str) else code
    return dict(
        lam.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": make_zip(files)},
            **kwargs,
        )
    )
