"""`ember usage` checked against the REPORT lines in the function's logs, and the one-minute
series surviving a server restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, free_port
from invoking import deploy, invoke

HANDLER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return "ok"
"""

REPORT = re.compile(
    r"^REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: (\d+) ms\tMemory Size: (\d+) MB"
)


def ember_usage(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ember", "usage", *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def usage_json(server: LiveServer, *args: str) -> dict[str, Any]:
    done = ember_usage(server, "--json", *args)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def reports(server: LiveServer, name: str, expected: int) -> list[tuple[int, int]]:
    """(billed ms, memory MB) of every REPORT line in the function's log group."""
    logs = server.client("logs")
    deadline = time.monotonic() + 30
    while True:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="REPORT")[
            "events"
        ]
        found = [REPORT.match(e["message"]) for e in events]
        lines = [(int(m[1]), int(m[2])) for m in found if m]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.fixture
def live(tmp_path: Path) -> Any:
    server = LiveServer(tmp_path / "data", free_port())
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def invocations_sum(server: LiveServer, name: str) -> float:
    now = dt.datetime.now(dt.UTC)
    answer = server.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": name}],
        StartTime=now - dt.timedelta(minutes=30),
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )
    return float(sum(p["Sum"] for p in answer["Datapoints"]))


def test_usage_matches_report_lines_and_survives_restart(live: LiveServer) -> None:
    lam = live.client("lambda")
    name = deploy(lam, HANDLER, prefix="usage", MemorySize=128)
    other = deploy(lam, HANDLER, prefix="usage-other", MemorySize=512)
    for event in ({}, {"sleep": 0.02}, {"fail": True}, {"sleep": 0.005}):
        invoke(lam, name, event)
    lam.update_function_configuration(FunctionName=name, MemorySize=1024)
    for event in ({"sleep": 0.03}, {}, {"sleep": 0.011}):
        invoke(lam, name, event)
    invoke(lam, other, {"sleep": 0.002})

    lines = reports(live, name, 7)
    assert len(lines) == 7
    assert {memory for _, memory in lines} == {128, 1024}
    billed = sum(b for b, _ in lines)
    gb_seconds = sum(b / 1000 * m / 1024 for b, m in lines)

    answer = usage_json(live, "--since", "1h")
    rows = {r["function"]: r for r in answer["rows"]}
    assert set(rows) >= {name, other}
    row = rows[name]
    assert row["requests"] == 7
    assert row["billed_ms"] == billed
    assert row["gb_seconds"] == pytest.approx(gb_seconds, rel=1e-9)
    assert row["cost"] == pytest.approx(7 / 1e6 * 0.20 + gb_seconds * 0.0000166667, rel=1e-9)
    other_lines = reports(live, other, 1)
    total = answer["total"]
    assert total["requests"] == 8
    assert total["billed_ms"] == billed + sum(b for b, _ in other_lines)
    assert total["cost_after_free_tier"] == 0  # well inside the monthly free tier

    by_version = usage_json(live, "--since", "1h", "--by", "version")
    assert [
        (r["function"], r["version"], r["requests"])
        for r in by_version["rows"]
        if r["function"] == name
    ] == [(name, "$LATEST", 7)]

    priced = usage_json(
        live,
        "--since",
        "30m",
        "--request-price",
        "1000000",
        "--gb-second-price",
        "1",
        "--free-requests",
        "5",
        "--free-gb-seconds",
        "0",
    )
    total_gb_s = priced["total"]["gb_seconds"]
    assert priced["total"]["cost"] == pytest.approx(8 + total_gb_s)
    assert priced["total"]["cost_after_free_tier"] == pytest.approx(3 + total_gb_s)

    table = ember_usage(live, "--since", "1h")
    assert table.returncode == 0, table.stderr
    assert name in table.stdout and "total" in table.stdout and "free tier" in table.stdout
    assert ember_usage(live, "--since", "soon").returncode != 0

    assert invocations_sum(live, name) == 7
    assert live.stop() == 0
    live.start()
    assert invocations_sum(live, name) == 7
    after = {r["function"]: r for r in usage_json(live, "--since", "1h")["rows"]}
    assert after[name] == {k: v for k, v in row.items()}
    invoke(live.client("lambda"), name)
    assert invocations_sum(live, name) == 8
    assert (Path(live.data_dir) / "metrics.sqlite3").exists()


def test_series_are_written_periodically_and_survive_a_kill(live: LiveServer) -> None:
    """Without a clean stop: the background writer has stored the buckets (every 10 s)."""
    import signal
    import sqlite3

    lam = live.client("lambda")
    name = deploy(lam, HANDLER, prefix="usage-kill")
    for _ in range(3):
        invoke(lam, name)
    path = Path(live.data_dir) / "metrics.sqlite3"
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(path) as db:
            stored = db.execute(
                "SELECT COALESCE(SUM(invocations), 0) FROM minute_series WHERE function = ?",
                (name,),
            ).fetchone()[0]
        if stored == 3:
            break
        time.sleep(0.5)
    assert stored == 3
    live.stop(signal.SIGKILL)
    live.start()
    assert invocations_sum(live, name) == 3
