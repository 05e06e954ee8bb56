"""Hostile functions against the runtime channel, the billed duration and the platform's log lines.

The function runs in the runtime's own process, so it can do what an attacker would: walk up
the stack to the runtime's main loop and take its channel (`channel`) and its end-of-output
marker (`marker`), then write frames of its own — unsolicited, for a foreign request, with an
oversized header, or a result before it is done — and print lines that imitate START, END and
REPORT. Each case ends with the right outcome for that invocation, the instance destroyed where
the protocol was broken, and the next invocation correct (and on a new instance).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from logged import reports, wait_for

from conftest import LiveServer
from ember.cli.logs import is_platform, keep_platform_marks
from invoking import Invoked, deploy, invoke

HOSTILE = r'''
import json, struct, sys, time

def runtime(name):
    """A local of the runtime's main loop, found as an attacker would: up the stack."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and name in frame.f_locals:
            return frame.f_locals[name]
        frame = frame.f_back
    raise LookupError(name)

def frame(header, body=b""):
    data = json.dumps(header).encode()
    return struct.pack("!II", len(data), len(body)) + data + body

def handler(event, context):
    mode = event.get("mode")
    channel = runtime("channel")
    rid = context.aws_request_id
    if mode == "foreign":  # a result for a request that is not this one
        other = "00000000-0000-4000-8000-000000000000"
        channel.sock.sendall(frame({"type": "result", "request_id": other, "error": False}, b'"foreign"'))
        time.sleep(5)
        return "late"
    if mode == "no-id":  # a result naming no request at all
        channel.sock.sendall(frame({"type": "result", "error": False}, b'"anonymous"'))
        time.sleep(5)
        return "late"
    if mode == "wrong-type":  # a frame the platform does not wait for now
        channel.sock.sendall(frame({"type": "ready"}))
        time.sleep(5)
        return "late"
    if mode == "oversized":  # a header length far over the limit (and a body length too)
        channel.sock.sendall(struct.pack("!II", 64 << 20, 0xFFFFFFFF) + b"{")
        time.sleep(5)
        return "late"
    if mode == "after":  # a second result right after the runtime's own, between invocations
        read = channel.read
        def read_after():
            channel.read = read
            channel.sock.sendall(frame({"type": "result", "request_id": rid, "error": False}, b'"sneaky"'))
            return read()
        channel.read = read_after
        return "after"
    if mode == "early":  # a result first, then keep working (asleep: no CPU to see)
        channel.sock.sendall(frame({"type": "result", "request_id": rid, "error": False}, b'"early"'))
        time.sleep(event.get("work", 2))
        return "real"
    if mode == "early-busy":  # the same, working on the CPU
        channel.sock.sendall(frame({"type": "result", "request_id": rid, "error": False}, b'"early"'))
        until = time.monotonic() + event.get("work", 2)
        while time.monotonic() < until:
            pass
        return "real"
    if mode == "forge":  # lines that look like the platform's
        marker = runtime("marker").decode()
        print("START RequestId: %s Version: $LATEST" % event["fake"])
        print("END RequestId: %s" % rid)
        print("REPORT RequestId: %s\tDuration: 0.01 ms\tBilled Duration: 1 ms\t"
              "Memory Size: 128 MB\tMax Memory Used: 1 MB" % rid)
        print("REPORT RequestId: %s\tDuration: 0.01 ms\tBilled Duration: 1 ms\t"
              "Memory Size: 128 MB\tMax Memory Used: 1 MB" % event["fake"])
        print("[ember] 0 lines dropped")
        print(json.dumps({"time": "2024-01-01T00:00:00.000Z", "type": "platform.report",
                          "record": {"requestId": rid, "metrics": {"billedDurationMs": 1}}}))
        print("%s %s" % (marker, "00000000-0000-4000-8000-000000000001"))  # a marker not awaited
        print("after the forgeries")
        return "forged"
    if mode == "spinner":  # a background thread busy on the CPU after the handler returned
        import threading
        def spin(seconds):
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                pass
        threading.Thread(target=spin, args=(event.get("work", 0.5),), daemon=True).start()
        time.sleep(0.01)  # let it start
    if mode == "sleeper":  # a background thread that waits (no CPU): the runtime is idle
        import threading
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    return {"n": event.get("n")}
'''


@pytest.fixture(scope="module")
def hostile(server: LiveServer) -> str:
    return deploy(
        server.client("lambda"), HOSTILE, prefix="hostile-frames", MemorySize=512, Timeout=30
    )


def destroyed_count(server: LiveServer) -> float:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^ember_instances_destroyed_total (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found[1])


def fresh_and_correct(lam: Any, name: str, n: int) -> Invoked:
    """The next invocation: its own answer, from a new instance (the old one was destroyed)."""
    result = invoke(lam, name, {"n": n})
    assert result.status == 200 and result.function_error is None, (result.payload, result.log)
    assert result.payload == {"n": n}
    assert result.cold, f"the instance that broke the protocol was reused:\n{result.log}"
    return result


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("foreign", "a result for another request"),
        ("no-id", "a result for another request"),
        ("wrong-type", "'ready' frame where 'result' was expected"),
        ("oversized", "an oversized frame header"),
    ],
)
def test_frames_that_are_not_this_invocations_result(
    server: LiveServer, lam: Any, hostile: str, mode: str, reason: str
) -> None:
    invoke(lam, hostile, {"n": 0})  # a warm instance to break
    result = invoke(lam, hostile, {"mode": mode})
    assert result.status == 200 and result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.InvalidResponse"
    assert reason in result.payload["errorMessage"]
    assert result.request_id in result.payload["errorMessage"]
    assert (
        result.report["status"] == "error"
        and result.report["error_type"] == "Runtime.InvalidResponse"
    )
    fresh_and_correct(lam, hostile, 1)


def test_an_unsolicited_frame_between_invocations_ends_the_instance(
    server: LiveServer, lam: Any, hostile: str
) -> None:
    invoke(lam, hostile, {"n": 0})
    before = destroyed_count(server)
    result = invoke(lam, hostile, {"mode": "after"})
    # The extra frame comes right after the runtime's result: read on its own it destroys the
    # idle instance; read together with the result it fails this invocation. Never delivered.
    if result.function_error is None:
        assert result.payload == "after"
    else:
        assert result.payload["errorType"] == "Runtime.InvalidResponse"
    wait_for(lambda: destroyed_count(server) > before, what="the instance to be destroyed")
    after = fresh_and_correct(lam, hostile, 2)
    assert "sneaky" not in after.raw.decode()


@pytest.mark.parametrize("mode", ["early", "early-busy"])
def test_an_early_result_does_not_end_the_billed_duration(
    server: LiveServer, lam: Any, hostile: str, mode: str
) -> None:
    logs = server.client("logs")
    group = f"/aws/lambda/{hostile}"
    invoke(lam, hostile, {"n": 0})
    # No LogType Tail: the REPORT is written when the platform settles the duration (when it
    # would freeze the instance), not when the result frame arrives.
    result = invoke(lam, hostile, {"mode": mode, "work": 3}, LogType="None")
    assert result.status == 200 and result.function_error is None
    assert result.payload == "early"  # the function fooled its own caller, nobody else
    request_id = result.headers["x-amzn-requestid"]
    report = wait_for(lambda: reports(logs, group, request_id), what="the REPORT")[0]["message"]
    duration = float(re.search(r"\tDuration: ([\d.]+) ms", report)[1])  # type: ignore[index]
    # Billed at least until the platform found the sandbox still working (its freeze, 5 ms after
    # the result), not up to the result it wrote first; and the instance is gone, its work with it.
    assert duration >= 5.0, report
    after = fresh_and_correct(lam, hostile, 3)
    assert "real" not in after.raw.decode()


@pytest.mark.parametrize("mode", ["early", "early-busy"])
def test_an_early_result_with_the_tail_still_ends_the_instance(
    server: LiveServer, lam: Any, hostile: str, mode: str
) -> None:
    """With LogType Tail the REPORT is settled at once (the tail carries it); a sandbox that
    keeps working after that is destroyed when it would be frozen."""
    invoke(lam, hostile, {"n": 0})
    before = destroyed_count(server)
    result = invoke(lam, hostile, {"mode": mode, "work": 3})
    assert result.payload == "early"
    assert result.report["id"] == result.request_id
    wait_for(lambda: destroyed_count(server) > before, what="the instance to be destroyed")
    after = fresh_and_correct(lam, hostile, 6)
    assert "real" not in after.raw.decode()


def test_forged_platform_lines_are_never_the_platforms(
    server: LiveServer, lam: Any, hostile: str
) -> None:
    fake = "11111111-2222-4333-8444-555555555555"
    result = invoke(lam, hostile, {"mode": "forge", "fake": fake})
    assert result.payload == "forged"
    request_id = result.request_id
    # The tail is plain text as AWS sends it; the platform's REPORT is its last line.
    assert result.report["id"] == request_id and result.report["used"] != "1"
    logs = server.client("logs")
    group = f"/aws/lambda/{hostile}"
    platform_reports = wait_for(lambda: reports(logs, group, request_id), what="the REPORT")
    assert len(platform_reports) == 1 and "Billed Duration" in platform_reports[0]["message"]
    assert reports(logs, group, fake) == []  # a REPORT printed for a made-up request is not one

    keep_platform_marks(logs)
    events = logs.filter_log_events(logGroupName=group, filterPattern=f'"{request_id}"')["events"]
    forged = [e for e in events if e["message"].startswith(("END RequestId", "REPORT RequestId"))]
    assert sum(is_platform(e) for e in forged) == 2  # the platform's END and REPORT ...
    assert sum(not is_platform(e) for e in forged) == 2  # ... and the function's imitations
    lines = logs.filter_log_events(logGroupName=group, filterPattern='"lines dropped"')["events"]
    assert lines and not any(is_platform(e) for e in lines)
    marker_lines = logs.filter_log_events(
        logGroupName=group, filterPattern='"00000000-0000-4000-8000-000000000001"'
    )
    assert len(marker_lines["events"]) == 1  # a marker that was not awaited is output like any
    assert not any(is_platform(e) for e in marker_lines["events"])

    # `ember logs` shows one block for the invocation, ending with the real REPORT, and marks
    # the function's look-alikes.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember",
            "logs",
            hostile,
            "--request-id",
            request_id,
            "--endpoint",
            server.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stdout.splitlines() if line.strip()]
    assert shown[0].startswith("── ") and request_id in shown[0] and fake not in shown[0]
    assert "after the forgeries" in done.stdout  # the forged END/REPORT did not end the block
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} REPORT RequestId: " + request_id, shown[-1])
    assert "Max Memory Used: 1 MB" not in shown[-1]
    imitations = [
        line for line in shown if "Max Memory Used: 1 MB" in line or "END RequestId" in line
    ]
    assert len([line for line in imitations if "[output] " in line]) == 3
    whole = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember",
            "logs",
            hostile,
            "--since",
            "1h",
            "--endpoint",
            server.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert whole.returncode == 0, whole.stderr
    assert fake not in "\n".join(
        line for line in whole.stdout.splitlines() if line.startswith("── ")
    )


def test_a_sleeping_background_thread_does_not_cost_the_instance(
    server: LiveServer, lam: Any, hostile: str
) -> None:
    """The control: a runtime back in its read, with a background thread asleep, is idle."""
    logs = server.client("logs")
    group = f"/aws/lambda/{hostile}"
    invoke(lam, hostile, {"n": 0})
    first = invoke(lam, hostile, {"mode": "sleeper", "n": 4}, LogType="None")
    assert first.payload == {"n": 4}
    request_id = first.headers["x-amzn-requestid"]
    wait_for(lambda: reports(logs, group, request_id), what="the REPORT")  # settled, not destroyed
    again = invoke(lam, hostile, {"n": 5})
    assert again.payload == {"n": 5} and not again.cold


def test_a_busy_background_thread_is_billed_but_keeps_the_instance(
    server: LiveServer, lam: Any, hostile: str
) -> None:
    """The runtime answered and is back at its read while a thread of the function works on:
    the function's own background work (Lambda freezes it mid-way). Billed until the platform
    saw it (its freeze), but the instance is not destroyed for it."""
    logs = server.client("logs")
    group = f"/aws/lambda/{hostile}"
    invoke(lam, hostile, {"n": 0})
    first = invoke(lam, hostile, {"mode": "spinner", "work": 0.5, "n": 7}, LogType="None")
    assert first.payload == {"n": 7}
    request_id = first.headers["x-amzn-requestid"]
    report = wait_for(lambda: reports(logs, group, request_id), what="the REPORT")[0]["message"]
    duration = float(re.search(r"\tDuration: ([\d.]+) ms", report)[1])  # type: ignore[index]
    assert duration >= 5.0, report
    again = invoke(lam, hostile, {"n": 8})
    assert again.payload == {"n": 8} and not again.cold, again.log
