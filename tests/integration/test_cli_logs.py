"""`ember logs` against a live server, run as a user runs it (`python -m ember logs …`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from logged import LoggedFunction, deploy_logged, wait_for, wait_for_report

from conftest import LiveServer
from invoking import invoke

HEADER = re.compile(
    r"^── \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · ([0-9a-f-]{36}) · \[\$LATEST\][0-9a-f]{32}"
)


@pytest.fixture(scope="module")
def logged(server: LiveServer) -> LoggedFunction:
    return deploy_logged(server.client("lambda"), server.client("logs"), prefix="cli-logs")


def ember_logs(
    server: LiveServer, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ember", "logs", *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def blocks(output: str) -> dict[str, list[str]]:
    """Invocation blocks by request id: the header line starts each."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        header = HEADER.match(line)
        if header:
            current = found.setdefault(header.group(1), [])
        elif line.strip() and current is not None:
            current.append(line)
    return found


def test_ember_logs_shows_each_invocation_as_a_block(
    server: LiveServer, logged: LoggedFunction
) -> None:
    done = ember_logs(server, logged.name)
    assert done.returncode == 0, done.stderr
    grouped = blocks(done.stdout)
    assert list(grouped) == logged.request_ids, done.stdout
    for n, request_id in enumerate(logged.request_ids, start=1):
        lines = grouped[request_id]
        start = next(i for i, line in enumerate(lines) if "START RequestId: " + request_id in line)
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3} START RequestId: ", lines[start])
        hello = next(i for i, line in enumerate(lines) if line.endswith(f"hello {n} from print"))
        assert start < hello  # in the order the platform wrote them
        assert any("processing order" in line for line in lines)
        assert "END RequestId: " + request_id in lines[-2]
        assert "REPORT RequestId: " + request_id in lines[-1]
        assert "Billed Duration:" in lines[-1]
    first = grouped[logged.request_ids[0]]
    assert "INIT_START Runtime Version:" in first[0]  # a cold start comes with its INIT_START
    assert any(line.endswith("cold start: module loaded") for line in first)
    assert done.stdout.count("\n\n") == 2  # a blank line between invocations
    assert "\x1b[" not in done.stdout  # no colour codes when not a terminal


def test_request_id_shows_just_that_invocation(server: LiveServer, logged: LoggedFunction) -> None:
    wanted = logged.request_ids[1]
    done = ember_logs(server, logged.name, "--request-id", wanted)
    assert done.returncode == 0, done.stderr
    grouped = blocks(done.stdout)
    assert list(grouped) == [wanted]
    lines = grouped[wanted]
    assert "START RequestId: " + wanted in lines[0]
    assert "REPORT RequestId: " + wanted in lines[-1]
    text = "\n".join(lines)
    assert "hello 2 from print" in text and "running low healthcheck" in text
    assert "hello 1 from print" not in text and "hello 3 from print" not in text
    for other in (logged.request_ids[0], logged.request_ids[2]):
        assert other not in done.stdout

    cold = ember_logs(server, logged.name, "--request-id", logged.request_ids[0])
    assert "INIT_START" in cold.stdout and "cold start: module loaded" in cold.stdout
    assert "hello 2 from print" not in cold.stdout

    missing = ember_logs(
        server, logged.name, "--request-id", "00000000-0000-0000-0000-000000000000"
    )
    assert missing.returncode == 1
    assert "no invocation" in missing.stderr


def test_filter_shows_matching_lines(server: LiveServer, logged: LoggedFunction) -> None:
    done = ember_logs(server, logged.name, "--filter", "?healthcheck ?payment")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert "running low healthcheck" in lines[0] and "payment failed for order 3" in lines[1]
    assert "[$LATEST]" in lines[0]  # the stream is shown with each line
    json_filter = ember_logs(server, logged.name, "--filter", "{ $.latency >= 200 }")
    assert [line.split('"order": {"id": ')[1][0] for line in json_filter.stdout.splitlines()] == [
        "2",
        "3",
    ]
    bad = ember_logs(server, logged.name, "--filter", "{ $.x > y }")
    assert bad.returncode == 1 and "InvalidParameterException" not in bad.stdout
    assert "Invalid filter pattern" in bad.stderr


def test_since_and_a_log_group_name(server: LiveServer, logged: LoggedFunction) -> None:
    future = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    done = ember_logs(server, logged.name, "--since", future)
    assert done.returncode == 0 and done.stdout == ""
    done = ember_logs(server, logged.group, "--since", "1h")
    assert list(blocks(done.stdout)) == logged.request_ids
    bad = ember_logs(server, logged.name, "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_colour_when_asked(server: LiveServer, logged: LoggedFunction) -> None:
    done = ember_logs(server, logged.name, "--color", "--request-id", logged.request_ids[2])
    assert done.returncode == 0, done.stderr
    error_line = next(line for line in done.stdout.splitlines() if "payment failed" in line)
    assert "\x1b[31m" in error_line  # [ERROR] in red
    report_line = next(line for line in done.stdout.splitlines() if "REPORT RequestId" in line)
    assert "\x1b[1;36m" in report_line  # REPORT highlighted


def test_unknown_function_and_unreachable_endpoint(server: LiveServer) -> None:
    done = ember_logs(server, "never-deployed-function")
    assert done.returncode == 1
    assert "no logs for never-deployed-function" in done.stderr
    unreachable = subprocess.run(
        [sys.executable, "-m", "ember", "logs", "x", "--endpoint", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1 and "cannot reach Ember" in unreachable.stderr


def test_follow_prints_new_invocations(server: LiveServer, logged: LoggedFunction) -> None:
    lam: Any = server.client("lambda")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ember",
            "logs",
            logged.name,
            "--follow",
            "--interval",
            "0.2",
            "--endpoint",
            server.endpoint,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(
            lambda: any(f"REPORT RequestId: {logged.request_ids[-1]}" in line for line in lines),
            timeout=20,
            what="the existing invocations",
        )
        result = invoke(lam, logged.name, {"n": 7})
        wait_for_report(server.client("logs"), logged.group, result.request_id)
        wait_for(
            lambda: any(f"REPORT RequestId: {result.request_id}" in line for line in lines),
            timeout=20,
            what="the new invocation in `ember logs --follow`",
        )
        output = "".join(lines)
        assert output.count(f"START RequestId: {result.request_id}") == 1
        assert "hello 7 from print" in output
        assert output.count(f"START RequestId: {logged.request_ids[0]}") == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
