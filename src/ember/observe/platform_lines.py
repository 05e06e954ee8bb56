"""The platform's own log lines, in Lambda's Text format (INIT_START, START, END, REPORT)."""

from __future__ import annotations

import math


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
