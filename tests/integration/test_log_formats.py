"""LoggingConfig: the JSON log format, application and system log levels, a custom log group."""

from __future__ import annotations

import json
import time
from typing import Any

from invoking import deploy, invoke

LOGS_AT_EVERY_LEVEL = """
import logging

logger = logging.getLogger("app")

def handler(event, context):
    logger.debug("a debug line")
    logger.info("an info line")
    logger.warning("a warning line")
    print("printed as is")
    if event.get("fail"):
        raise ValueError("it broke")
    return "ok"
"""


def _records(log: str) -> list[Any]:
    records = []
    for line in log.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append(line)
    return records


def test_json_format_writes_platform_records_and_json_application_logs(lam: Any) -> None:
    name = deploy(
        lam,
        LOGS_AT_EVERY_LEVEL,
        "jsonlogs",
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
    )
    config = lam.get_function_configuration(FunctionName=name)["LoggingConfig"]
    assert config["LogFormat"] == "JSON" and config["ApplicationLogLevel"] == "INFO"

    records = _records(invoke(lam, name).log)
    kinds = [r["type"] for r in records if isinstance(r, dict) and "type" in r]
    assert kinds == ["platform.start", "platform.report"]
    start = next(r for r in records if isinstance(r, dict) and r.get("type") == "platform.start")
    assert start["record"]["version"] == "$LATEST" and start["time"].endswith("Z")
    report = next(r for r in records if isinstance(r, dict) and r.get("type") == "platform.report")
    metrics = report["record"]["metrics"]
    assert report["record"]["status"] == "success"
    assert metrics["memorySizeMB"] == 128 and metrics["billedDurationMs"] >= 1
    assert metrics["maxMemoryUsedMB"] > 0 and "initDurationMs" in metrics  # the first call is cold

    application = [r for r in records if isinstance(r, dict) and "level" in r]
    assert [(r["level"], r["message"]) for r in application] == [
        ("INFO", "an info line"),
        ("WARNING", "a warning line"),
    ]  # DEBUG is below ApplicationLogLevel INFO
    assert all(
        r["logger"] == "app" and r["requestId"] == start["record"]["requestId"] for r in application
    )
    assert "printed as is" in records  # stdout stays plain text


def test_application_log_level_filters_and_errors_are_json(lam: Any) -> None:
    name = deploy(
        lam,
        LOGS_AT_EVERY_LEVEL,
        "jsonwarn",
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"},
    )
    result = invoke(lam, name, {"fail": True})
    assert result.function_error == "Unhandled"
    records = _records(result.log)
    levels = [r["level"] for r in records if isinstance(r, dict) and "level" in r]
    assert levels == ["WARNING", "ERROR"]
    error = next(r for r in records if isinstance(r, dict) and r.get("level") == "ERROR")
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "it broke"
    assert error["stackTrace"]
    report = next(r for r in records if isinstance(r, dict) and r.get("type") == "platform.report")
    assert report["record"]["status"] == "success"  # a handled function error, not a crash


def test_system_log_level_warn_drops_the_platform_records_of_good_invocations(lam: Any) -> None:
    name = deploy(
        lam,
        LOGS_AT_EVERY_LEVEL,
        "jsonsys",
        LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "WARN"},
    )
    records = _records(invoke(lam, name).log)
    assert not [r for r in records if isinstance(r, dict) and "type" in r]


def test_text_format_is_the_default_and_a_custom_log_group_is_used(lam: Any, server: Any) -> None:
    name = deploy(lam, LOGS_AT_EVERY_LEVEL, "textlogs", LoggingConfig={"LogGroup": "/custom/group"})
    result = invoke(lam, name)
    assert result.log.startswith("START RequestId: ")
    assert "\tan info line" not in result.log  # Python's root default: WARNING and above
    assert "[WARNING]" in result.log and "a warning line" in result.log
    logs = server.client("logs")
    deadline = time.monotonic() + 10  # logs are stored by a writer thread, just after the call
    while True:
        groups = [
            g["logGroupName"]
            for g in logs.describe_log_groups(logGroupNamePrefix="/custom/")["logGroups"]
        ]
        if groups or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert groups == ["/custom/group"]
