"""Ember's trace routes (what `ember trace` reads):

GET /_ember/traces/{id}                    one trace's spans; id as X-Ray root or 32 hex
GET /_ember/traces?function=NAME&limit=N   the most recent traces (of a function), newest first
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ember.observe import trace_ids
from ember.platform import Platform

MAX_LIMIT = 1000


def routes(platform: Platform) -> list[Route]:
    recorder = platform.traces

    async def one(request: Request) -> Response:
        trace_id = trace_ids.normalize_trace_id(request.path_params["trace_id"])
        if trace_id is None:
            return JSONResponse(
                {"message": "Not a trace id (expected 1-xxxxxxxx-xxx…x or 32 hex digits)"},
                status_code=400,
            )
        await asyncio.to_thread(recorder.flush)  # include invocations that just finished
        spans = await asyncio.to_thread(recorder.trace, trace_id)
        if not spans:
            return JSONResponse({"message": f"No trace {trace_id} is stored"}, status_code=404)
        return JSONResponse(
            {
                "traceId": trace_id,
                "xrayTraceId": trace_ids.xray_root(trace_id),
                "spans": [span.as_json() for span in spans],
            }
        )

    async def recent(request: Request) -> Response:
        try:
            limit = min(MAX_LIMIT, max(1, int(request.query_params.get("limit", "20"))))
        except ValueError:
            return JSONResponse({"message": "limit must be a number"}, status_code=400)
        function = request.query_params.get("function") or None
        await asyncio.to_thread(recorder.flush)
        found = await asyncio.to_thread(recorder.recent, function, limit)
        return JSONResponse({"traces": found})

    return [
        Route("/_ember/traces", recent, methods=["GET"]),
        Route("/_ember/traces/{trace_id:str}", one, methods=["GET"]),
    ]
