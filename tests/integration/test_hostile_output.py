"""Floods of output against a server of its own: its memory and its log store stay bounded.

A function writes 8 MB of newlines, 100 MB of one-byte lines, and 10 MB of lines imitating the
runtime's end-of-output marker (read from the runtime's stack, as an attacker would, with made-up
request ids and its own). After each, the server's and its store writer's resident memory
(VmRSS and peak VmHWM from /proc/<pid>/status) and logs.sqlite3 with its WAL are compared with a
quiet run of the same function: each flood may add its invocation's output budget to the store
and a few MB to memory, never an amount that grows with what the function wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from logged import reports, wait_for

from conftest import LiveServer, free_port
from ember.cli.logs import is_platform, keep_platform_marks
from ember.worker.instance import LINE_OVERHEAD, OUTPUT_BUDGET
from invoking import deploy, invoke

FLOODS = r"""
import os, sys, uuid

def marker():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and "marker" in frame.f_locals:
            return frame.f_locals["marker"]
        frame = frame.f_back

def write(chunk, times):
    out = sys.stdout.buffer
    for _ in range(times):
        out.write(chunk)
    out.flush()

def handler(event, context):
    flood = event.get("flood")
    if flood == "newlines":  # 8 MB of empty lines
        write(b"\n" * (1 << 20), 8)
    elif flood == "bytes":  # 100 MB of one-byte lines
        write(b"a\n" * (1 << 19), 100)
    elif flood == "markers":  # 10 MB of lines that imitate the end-of-output marker
        mark = marker()
        lines = [mark + b" " + str(uuid.uuid4()).encode() + b"\n" for _ in range(2000)]
        lines[100] = mark + b" " + context.aws_request_id.encode() + b"\n"  # its own id too
        lines[200] = mark + b" init\n"
        chunk = b"".join(lines)
        write(chunk, (10 << 20) // len(chunk) + 1)
    else:
        print("a quiet line")
    return flood or "quiet"
"""

MB = 1024 * 1024


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data", free_port())
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def memory_kb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)[1])
        for key in ("VmRSS", "VmHWM")
    }  # type: ignore[index]


def store_writer_pid(server_pid: int) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (
            int(stat.rsplit(")", 1)[1].split()[1]) == server_pid
            and b"ember.observe.store_writer" in cmdline
        ):
            return int(entry.name)
    raise AssertionError("no store writer process")


def store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("logs.sqlite3*"))


def measure(live: LiveServer, writer: int) -> dict[str, int]:
    assert live.process is not None
    server, store = memory_kb(live.process.pid), memory_kb(writer)
    return {
        "server_rss_kb": server["VmRSS"],
        "server_hwm_kb": server["VmHWM"],
        "writer_rss_kb": store["VmRSS"],
        "writer_hwm_kb": store["VmHWM"],
        "store_bytes": store_bytes(live.data_dir),
    }


def stored_lines(logs: Any, group: str, request_id: str) -> tuple[int, list[str]]:
    """How many events the invocation stored (START to REPORT), and its platform lines."""
    keep_platform_marks(logs)
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    count, platform = 0, []
    inside = False
    for stream in streams:
        token = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream["logStreamName"],
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            page = logs.get_log_events(**kwargs)
            for event in page["events"]:
                mine = request_id in event["message"] and is_platform(event)
                if mine and event["message"].startswith("START "):
                    inside = True
                if inside:
                    count += 1
                    if is_platform(event):
                        platform.append(event["message"])
                if mine and event["message"].startswith("REPORT "):
                    inside = False
            if page["nextForwardToken"] == token or not page["events"]:
                break
            token = page["nextForwardToken"]
    return count, platform


def test_floods_of_output_are_bounded(live: LiveServer) -> None:
    lam, logs = live.client("lambda"), live.client("logs")
    name = deploy(lam, FLOODS, prefix="floods", MemorySize=512, Timeout=60)
    group = f"/aws/lambda/{name}"
    assert live.process is not None
    writer = store_writer_pid(live.process.pid)
    quiet_ids = []
    for _ in range(5):
        result = invoke(lam, name, {})
        assert result.payload == "quiet"
        quiet_ids.append(result.request_id)
    for request_id in quiet_ids:
        wait_for(lambda rid=request_id: reports(logs, group, rid), what="the quiet REPORTs")  # type: ignore[misc]
    quiet = measure(live, writer)
    budget_lines = OUTPUT_BUDGET // LINE_OVERHEAD
    figures = {"quiet": quiet}
    for flood in ("newlines", "bytes", "markers"):
        result = invoke(lam, name, {"flood": flood})
        assert result.status == 200 and result.function_error is None, result.payload
        assert result.payload == flood
        wait_for(
            lambda rid=result.request_id: reports(logs, group, rid),
            timeout=30,  # type: ignore[misc]
            what=f"the REPORT after {flood}",
        )
        figures[flood] = measure(live, writer)
        count, platform = stored_lines(logs, group, result.request_id)
        assert count <= budget_lines + 4, (flood, count)  # START, the notice, END, REPORT
        dropped = [m for m in platform if m.startswith("[ember] ") and "lines dropped" in m]
        assert len(dropped) == 1, (flood, platform)
        assert int(dropped[0].split()[1]) > 100_000  # nearly everything was counted, not kept
    print("\n".join(f"{k}: {v}" for k, v in figures.items()))
    after = figures["markers"]
    # The store grows by at most the three invocations' budgets (a stored line costs about
    # LINE_OVERHEAD beyond its text) plus what its WAL keeps; the old code grew by gigabytes.
    assert after["store_bytes"] - quiet["store_bytes"] <= 3 * OUTPUT_BUDGET * 3 // 2 + 8 * MB, (
        figures
    )
    # Memory: a few MB on top of the quiet run's peak, in the server and in its store writer.
    assert after["server_hwm_kb"] - quiet["server_hwm_kb"] <= 24 * 1024, figures
    assert after["writer_hwm_kb"] - quiet["writer_hwm_kb"] <= 24 * 1024, figures
    # And the function still works normally afterwards.
    assert invoke(lam, name, {}).payload == "quiet"
