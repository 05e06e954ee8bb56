"""Nothing accepted is lost: every Event invoke that got a 202 runs, even across a SIGKILL; and
an event that could not be stored (disk full) gets an error, never a 202.

Real parts only: `ember server` subprocesses, real sandboxes, a real tmpfs for the disk-full
case. Which events ran is read from the function's own log lines in `<data_dir>/logs.sqlite3`
(the handler prints `RAN <id>`); an event is only taken off the queue once the logs of its
attempt are stored, so an accepted event missing from the logs would be a lost one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncing import function_stats, marked, wait_for

from conftest import LiveServer, free_port
from invoking import deploy
from mounts import tmpfs

MARKER = """
def handler(event, context):
    print("RAN " + event["id"])
"""

TOTAL = 3000
KILL_AFTER = 1500  # 202s received before the SIGKILL
SENDERS = 8


def _event_request(conn: http.client.HTTPConnection, name: str, body: bytes) -> int:
    conn.request(
        "POST",
        f"/2015-03-31/functions/{name}/invocations",
        body=body,
        headers={"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    return response.status


def _process_tree(root: int) -> dict[int, str]:
    """Descendants of `root` (pid -> command line), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    found: dict[int, str] = {}
    todo = [pid for pid, parent in parents.items() if parent == root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            found[pid] = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        todo.extend(p for p, parent in parents.items() if parent == pid)
    return found


def _alive(pids: dict[int, str]) -> dict[int, str]:
    """Those of `pids` still running the same command (not zombies)."""
    alive = {}
    for pid, cmd in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            now = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        except OSError:
            continue
        state = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("State:")), "?"
        )
        if state != "Z" and now == cmd:
            alive[pid] = cmd
    return alive


def test_sigkill_in_the_middle_of_a_burst_loses_nothing(
    tmp_path: Path, record_property: Any
) -> None:
    live = LiveServer(tmp_path / "data", free_port())
    live.start()
    old_tree: dict[int, str] = {}
    try:
        name = deploy(live.client("lambda"), MARKER, "durable")
        assert live.process is not None
        accepted: list[str] = []
        lock = threading.Lock()
        enough = threading.Event()
        errors: Counter[str] = Counter()

        def sender(worker: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
            try:
                for n in range(worker, TOTAL, SENDERS):
                    event_id = f"e{n:05d}"
                    try:
                        status = _event_request(conn, name, json.dumps({"id": event_id}).encode())
                    except (OSError, http.client.HTTPException) as exc:
                        with lock:
                            errors[type(exc).__name__] += 1
                        return  # the server is gone: what was not answered is not accepted
                    with lock:
                        if status == 202:
                            accepted.append(event_id)
                            if len(accepted) >= KILL_AFTER:
                                enough.set()
                        else:
                            errors[f"HTTP {status}"] += 1
            finally:
                conn.close()

        threads = [threading.Thread(target=sender, args=(w,)) for w in range(SENDERS)]
        for t in threads:
            t.start()
        assert enough.wait(120), f"only {len(accepted)} events accepted; errors {dict(errors)}"
        old_tree = _process_tree(live.process.pid)
        live.process.send_signal(signal.SIGKILL)
        live.process.wait(10)
        for t in threads:
            t.join(60)
        with lock:
            accepted_ids = set(accepted)
        assert len(accepted_ids) >= KILL_AFTER
        assert len(accepted_ids) < TOTAL, "the burst ended before the SIGKILL: nothing was tested"
        ran_before = Counter(marked(live.data_dir, name, "RAN "))
        survivors = _alive(old_tree)

        live.start()  # the same data dir: the queue is reloaded, stale sandboxes cleaned up

        def all_ran() -> Counter[str] | None:
            ran = Counter(marked(live.data_dir, name, "RAN "))
            return ran if accepted_ids <= set(ran) else None

        try:
            ran = wait_for(
                "every accepted event to run after the restart", all_ran, timeout=120, interval=0.25
            )
        except AssertionError:
            ran = Counter(marked(live.data_dir, name, "RAN "))
            missing = sorted(accepted_ids - set(ran))
            raise AssertionError(
                f"{len(missing)} accepted events never ran, e.g. {missing[:10]}"
                f"\n{live.log()[-3000:]}"
            ) from None
        wait_for(
            "the queue to drain",
            lambda: (s := function_stats(live, name))["queued"] == 0 and s["in_flight"] == 0,
        )

        twice = {i: c for i, c in ran.items() if c > 1}
        unanswered_but_ran = set(ran) - accepted_ids  # in flight when the server died
        summary = {
            "accepted": len(accepted_ids),
            "ran_before_kill": len(ran_before),
            "ran": len(ran),
            "ran_more_than_once": len(twice),
            "ran_without_a_202": len(unanswered_but_ran),
            "client_errors": dict(errors),
            "sandbox_processes_alive_after_sigkill": len(survivors),
            "still_alive_after_restart": len(_alive(old_tree)),
        }
        for key, value in summary.items():
            record_property(key, value)
        print(f"\nSIGKILL burst: {json.dumps(summary)}")
        assert all(c <= 2 for c in twice.values()), twice  # one kill: at most one re-run each
        assert all(i.startswith("e") for i in unanswered_but_ran)
    finally:
        if live.process is not None and live.process.poll() is None:
            live.stop()
        for pid in _alive(old_tree):  # only processes this test's server started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- disk full --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of its own (needs root; skipped where mounting is not permitted), to be the
    data dir of a server whose log lives beside it, on the ordinary disk."""
    with tmpfs(tmp_path / "data", 16) as mountpoint:
        yield mountpoint


def _fill(path: Path) -> int:
    """Write zeros into `path` until the file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError:
                break
        with contextlib.suppress(OSError):  # the last few bytes, below one chunk
            while f.write(b"\0" * 4096):
                written += 4096
    return written


def test_disk_full_during_enqueue_is_an_error_never_a_202(small_disk: Path) -> None:
    live = LiveServer(small_disk, free_port())
    live.start()
    try:
        name = deploy(live.client("lambda"), MARKER, "diskfull")
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        # One event before: the queue works on this disk.
        assert _event_request(conn, name, json.dumps({"id": "before"}).encode()) == 202
        wait_for("the first event to run", lambda: marked(live.data_dir, name, "RAN "))

        filler = small_disk / "filler"
        assert _fill(filler) > 0
        # 200 KB events: each needs new pages in the queue's WAL, which a full disk refuses.
        pad = "x" * 200_000
        statuses = Counter(
            _event_request(conn, name, json.dumps({"id": f"full{i}", "pad": pad}).encode())
            for i in range(10)
        )
        assert 202 not in statuses, f"an event was accepted on a full disk: {statuses}"
        assert all(500 <= s < 600 for s in statuses), statuses

        # Space again: events are accepted and run; the refused ones never do.
        filler.unlink()
        assert _event_request(conn, name, json.dumps({"id": "after", "pad": pad}).encode()) == 202
        wait_for(
            "the event after the disk was freed to run",
            lambda: "after" in marked(live.data_dir, name, "RAN "),
        )
        ran = marked(live.data_dir, name, "RAN ")
        assert not [i for i in ran if i.startswith("full")], ran
        conn.close()
    finally:
        live.stop()
