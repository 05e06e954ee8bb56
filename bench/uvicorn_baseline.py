"""The "server model" baseline: a bare Starlette app that calls the handler in-process.

Run by bench/common.py as `uvicorn uvicorn_baseline:app --loop uvloop --http httptools` with
BENCH_TASK_DIR pointing at a directory holding app.py (the same handler Ember runs). The POST
route has the Invoke API's path shape, parses the JSON body, calls the handler and returns its
JSON-serialized result: what a team would write instead of a serverless platform, with no
isolation, no per-invocation logs and no accounting.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _load_handler() -> Any:
    path = Path(os.environ.get("BENCH_TASK_DIR", ".")) / "app.py"
    spec = importlib.util.spec_from_file_location("app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


handler = _load_handler()


async def invoke(request: Request) -> Response:
    event = json.loads(await request.body())
    result = handler(event, None)
    return Response(json.dumps(result), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[
        Route("/2015-03-31/functions/{name}/invocations", invoke, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
)
