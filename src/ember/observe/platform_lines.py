"""The platform's own log lines: Lambda's Text format (INIT_START, START, END, REPORT) and,
for LogFormat JSON, the platform.initStart / platform.start / platform.report records."""

from __future__ import annotations

import math
import time

import orjson


def init_start(runtime: str, version: str, region: str) -> str:
    return (
        f"INIT_START Runtime Version: {runtime.replace('python', 'python:')}.v{version}\t"
        f"Runtime Version ARN: arn:aws:lambda:{region}::runtime:ember-{runtime}-{version}"
    )


def start(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def billed_ms(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def report(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status:
        parts.append(f"Status: {status}")
    if error_type and status == "error":
        parts.append(f"Error Type: {error_type}")
    return "\t".join(parts)


# -- LoggingConfig.LogFormat = JSON: the same records as JSON objects ------------------------


def _record(kind: str, at_ms: int, record: dict[str, object]) -> str:
    at = at_ms / 1000
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{at_ms % 1000:03d}Z"
    return orjson.dumps({"time": when, "type": kind, "record": record}).decode()


def init_start_json(
    at_ms: int, runtime: str, version: str, region: str, function: str, function_version: str
) -> str:
    return _record(
        "platform.initStart",
        at_ms,
        {
            "initializationType": "on-demand",
            "phase": "init",
            "runtimeVersion": f"{runtime.replace('python', 'python:')}.v{version}",
            "runtimeVersionArn": f"arn:aws:lambda:{region}::runtime:ember-{runtime}-{version}",
            "functionName": function,
            "functionVersion": function_version,
        },
    )


def start_json(at_ms: int, request_id: str, version: str) -> str:
    return _record("platform.start", at_ms, {"requestId": request_id, "version": version})


def report_json(
    at_ms: int,
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    metrics: dict[str, object] = {
        "durationMs": round(duration_ms, 3),
        "billedDurationMs": billed_ms(duration_ms),
        "memorySizeMB": memory_mb,
        "maxMemoryUsedMB": max_memory_mb,
    }
    if init_ms is not None:
        metrics["initDurationMs"] = round(init_ms, 3)
    record: dict[str, object] = {
        "requestId": request_id,
        "metrics": metrics,
        "status": status or "success",
    }
    if error_type and status:
        record["errorType"] = error_type
    return _record("platform.report", at_ms, record)
