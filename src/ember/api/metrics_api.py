"""Ember's own metric routes: Prometheus `/metrics`, `/_ember/usage` and `/_ember/metrics`.

`/_ember/usage?since=<seconds>&by=function|version` — requests, billed ms and GB-seconds per
function (or version) over the last `since` seconds (at most the 24 hours the series keep).
`/_ember/metrics?function=<name>[&version=<v>]&minutes=<n>` — the last n one-minute buckets.
Both answer JSON; `ember usage` and `ember metrics` are their clients.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ember.observe.series import RETENTION_MINUTES
from ember.platform import Platform

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def routes(platform: Platform) -> list[Route]:
    metrics = platform.metrics

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    async def usage(request: Request) -> Response:
        by = request.query_params.get("by", "function")
        try:
            since_s = _number(request, "since", 86400, 1, RETENTION_MINUTES * 60)
        except ValueError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        if by not in ("function", "version"):
            return JSONResponse({"message": "by must be function or version"}, status_code=400)
        until = time.time()
        rows = metrics.series.usage(until - since_s, until, by_version=by == "version")
        return JSONResponse(
            {
                "since": until - since_s,
                "until": until,
                "by": by,
                "rows": [
                    {
                        "function": r.function,
                        "version": r.version,
                        "requests": r.requests,
                        "billed_ms": r.billed_ms,
                        "gb_seconds": r.gb_seconds,
                    }
                    for r in rows
                ],
            }
        )

    async def minute_series(request: Request) -> Response:
        function = request.query_params.get("function")
        version = request.query_params.get("version")
        try:
            minutes = int(_number(request, "minutes", 60, 1, RETENTION_MINUTES))
        except ValueError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        end_minute = int(time.time() // 60) + 1
        start_minute = end_minute - minutes
        found = metrics.series.select(function or None, version or None, start_minute, end_minute)
        rows = []
        for minute in range(start_minute, end_minute):
            buckets = found.get(minute, [])
            n = sum(b.duration_n for b in buckets)
            maxima = [b.duration_max for b in buckets if b.duration_max is not None]
            rows.append(
                {
                    "minute": minute * 60,
                    "invocations": sum(b.invocations for b in buckets),
                    "errors": sum(b.errors for b in buckets),
                    "throttles": sum(b.throttles for b in buckets),
                    "cold_starts": sum(b.cold_starts for b in buckets),
                    "duration_avg_ms": sum(b.duration_sum for b in buckets) / n if n else None,
                    "duration_max_ms": max(maxima) if maxima else None,
                    "concurrency": max(
                        (b.concurrency if version else b.function_concurrency for b in buckets),
                        default=0,
                    ),
                }
            )
        return JSONResponse({"function": function, "version": version, "rows": rows})

    return [
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/_ember/usage", usage, methods=["GET"]),
        Route("/_ember/metrics", minute_series, methods=["GET"]),
    ]
