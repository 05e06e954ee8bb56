"""Helpers shared by the asynchronous-invocation tests: queue figures, stored logs, polling."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from conftest import LiveServer

T = TypeVar("T")

REQUEST_ID = re.compile(r"^REPORT RequestId: ([0-9a-f-]{36})\t")


def queue_stats(server: LiveServer) -> dict[str, dict[str, Any]]:
    """GET /_ember/async: per-function queued, oldest age, in-flight, succeeded, retries, ..."""
    with urllib.request.urlopen(server.endpoint + "/_ember/async", timeout=10) as response:
        table: dict[str, dict[str, Any]] = json.load(response)
    return table


def function_stats(server: LiveServer, name: str) -> dict[str, Any]:
    empty = {
        "queued": 0,
        "oldest_age_s": 0.0,
        "in_flight": 0,
        "retries": 0,
        "failures": 0,
        "expired": 0,
        "succeeded": 0,
    }
    return queue_stats(server).get(name, empty)


def log_messages(data_dir: Path, function: str, platform: bool | None = None) -> list[str]:
    """Every stored log line of a function, in the order stored (read straight from
    `<data_dir>/logs.sqlite3`, which the server writes in WAL mode); with `platform`, only the
    platform's own lines (True) or only the function's output (False)."""
    path = data_dir / "logs.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10)
    which = "" if platform is None else f" AND platform = {int(platform)}"
    try:
        rows = conn.execute(
            f"SELECT message FROM log_events WHERE log_group = ?{which} ORDER BY id",
            (f"/aws/lambda/{function}",),
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()
    return [row[0] for row in rows]


def report_ids(messages: list[str]) -> list[str]:
    """The RequestIds of the REPORT lines, one per finished attempt (pass the platform's lines:
    `log_messages(..., platform=True)`)."""
    return [m[1] for m in map(REQUEST_ID.match, messages) if m]


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def marked(data_dir: Path, function: str, marker: str) -> list[str]:
    """The rest of each log line of `function` that starts with `marker` (what the handler
    printed after it)."""
    return [
        m[len(marker) :].strip() for m in log_messages(data_dir, function) if m.startswith(marker)
    ]
