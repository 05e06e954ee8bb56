"""Helpers for the logs tests: a function that prints and logs, and waiting for its lines.

Invocations store their log lines asynchronously (a writer thread batches them), so tests poll
the Logs API briefly rather than sleeping blindly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ember.cli.logs import is_platform, keep_platform_marks
from invoking import deploy, invoke

CODE = """
import json, logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)
print("cold start: module loaded")

def handler(event, context):
    n = event.get("n", 0)
    print(f"hello {n} from print")
    logger.info("processing order %s", n)
    if event.get("warn"):
        logger.warning("running low healthcheck")
    if event.get("fail"):
        logger.error("payment failed for order %s", n)
    print(json.dumps({"level": "ERROR" if event.get("fail") else "INFO", "latency": n * 100,
                      "order": {"id": n}, "tags": ["t%s" % n]}))
    return n
"""

# n=1 plain, n=2 with a warning, n=3 with an error
EVENTS: list[dict[str, Any]] = [{"n": 1}, {"n": 2, "warn": True}, {"n": 3, "fail": True}]

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 5.0, what: str = "the condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def reports(logs: Any, group: str, request_id: str | None = None) -> list[dict[str, Any]]:
    """The platform's REPORT events (of one invocation): never a function's look-alike."""
    keep_platform_marks(logs)
    pattern = f'"REPORT RequestId: {request_id}"' if request_id else '"REPORT RequestId:"'
    try:
        events = logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [e for e in events if is_platform(e) and e["message"].startswith("REPORT RequestId: ")]


def wait_for_report(logs: Any, group: str, request_id: str) -> dict[str, Any]:
    found = wait_for(lambda: reports(logs, group, request_id), what=f"the REPORT of {request_id}")
    return found[0]


@dataclass
class LoggedFunction:
    name: str
    group: str
    request_ids: list[str]  # one per EVENTS entry, in order


def deploy_logged(lam: Any, logs: Any, prefix: str = "logs") -> LoggedFunction:
    """Deploy CODE, invoke it once per EVENTS entry, and wait until every REPORT is stored."""
    name = deploy(lam, CODE, prefix=prefix)
    group = f"/aws/lambda/{name}"
    ids = []
    for event in EVENTS:
        result = invoke(lam, name, event)
        assert result.status == 200 and result.function_error is None, result
        ids.append(result.request_id)
    for request_id in ids:
        wait_for_report(logs, group, request_id)
    return LoggedFunction(name, group, ids)
