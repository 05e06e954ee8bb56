"""`ember server`: one process tree with everything, on the embedded default (SQLite + files)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import resource
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from ember.api.app import build_app
from ember.api.http_protocol import CoalescingHttpProtocol, tcp_connection_limit
from ember.platform import Platform
from ember.settings import Settings
from ember.store.data_files import DataFileError


class DataDirBusy(Exception):
    pass


class _Server(uvicorn.Server):
    """uvicorn's server, except that Ctrl-C / SIGTERM end in a clean exit (status 0).

    Plain uvicorn re-raises the signal once it has shut down, so the process would die of
    SIGTERM (-15) or end in KeyboardInterrupt (Click: "Aborted!", status 1).
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data dir for the server's lifetime."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "server.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirBusy(
                f"another Ember server (pid {holder}) is already using the data directory "
                f"{data_dir.resolve()}; stop it or choose another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


async def serve(settings: Settings) -> None:
    platform = Platform(settings)
    try:
        tcp = socket.create_server((settings.host, settings.port), backlog=2048)
    except OSError as exc:
        await platform.stop()
        raise SystemExit(
            f"ember: cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    await platform.start()
    config = uvicorn.Config(
        build_app(platform),
        host=settings.host,
        port=settings.port,
        loop="none",
        # httptools, one send per response, bounded clients (timeouts, TCP connection cap)
        http=CoalescingHttpProtocol.configured(max_tcp_connections=tcp_connection_limit()),
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # no proxy in front: skip the middleware on the hot path
        lifespan="off",
    )
    server = _Server(config)
    print(
        f"Ember is listening on {settings.endpoint} (data in {settings.data_dir.resolve()})",
        flush=True,
    )
    print(
        f"  boto3: boto3.client('lambda', endpoint_url='{settings.endpoint}', "
        f"region_name='{settings.region}', aws_access_key_id='x', aws_secret_access_key='x')",
        flush=True,
    )
    print(
        f"  credentials for AWS_IAM function URLs: {platform.access_keys.credentials_file} "
        "(AWS_SHARED_CREDENTIALS_FILE=<that file> AWS_PROFILE=ember)",
        flush=True,
    )
    try:
        # The Unix socket is how sandboxes reach the API (bound into them read-only).
        await server.serve(sockets=[tcp, platform.api_listener])
    finally:
        await platform.stop()


def raise_open_files_limit() -> None:
    """Every instance holds a few descriptors (its socket, log pipe, API listener, cgroup control
    files): lift the soft limit (often 1024) to the hard one so the account concurrency limit,
    not the descriptor table, is what caps scale-out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(settings: Settings) -> int:
    if os.geteuid() != 0:
        print(
            "ember: the server must run as root: it builds sandboxes with Linux namespaces and "
            "cgroups (function code itself runs as an unprivileged user)",
            file=sys.stderr,
        )
        return 1
    raise_open_files_limit()
    try:
        with exclusive(settings.data_dir):
            try:
                import uvloop

                uvloop.run(serve(settings))
            except ImportError:  # pragma: no cover - uvloop is a dependency
                asyncio.run(serve(settings))
    except (DataDirBusy, DataFileError) as refused:
        print(f"ember: {refused}", file=sys.stderr)
        return 1
    return 0
