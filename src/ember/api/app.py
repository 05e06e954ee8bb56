"""The ASGI application: one endpoint for every service Ember speaks.

Requests are routed by their SigV4 credential scope's service name (as AWS endpoints do);
unsigned requests go by path. Ember's own routes live under /_ember and /health. Before any of
that, api/request_guard.py decides whether the request is answered at all (Host, Origin and
content-type rules against web pages driving the API).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ember.api import (
    code_urls,
    concurrency_api,
    event_config_api,
    function_url_api,
    invoke_api,
    layers_api,
    permissions_api,
    tags_api,
    traces_api,
    url_front,
    versions_api,
    wire,
)
from ember.api.cloudwatch_api import CloudWatchApi
from ember.api.credentials import scope_of
from ember.api.lambda_api import LambdaApi
from ember.api.logs_api import LogsApi
from ember.api.metrics_api import routes as metrics_routes
from ember.api.request_guard import RequestGuard, Seen
from ember.errors import EmberError, ResourceNotFound, ServiceError
from ember.platform import Platform

log = logging.getLogger(__name__)

ServiceHandler = Callable[[Request], Awaitable[Response]]

# Modules whose import registers their Lambda operations with lambda_api.
OPERATION_MODULES = (
    event_config_api,
    invoke_api,
    layers_api,
    versions_api,
    concurrency_api,
    permissions_api,
    tags_api,
    function_url_api,
)


class EmberApp:
    """The ASGI entry point. AWS API requests (every path but Ember's own) go straight to their
    service handler — this is the invoke hot path, so it skips Starlette's router and
    middleware; `/health` and `/_ember/*` go through Starlette. Every response carries an
    `x-amzn-RequestId`, as AWS's do. The guard, when given, refuses requests before all that."""

    def __init__(
        self,
        aws: ServiceHandler,
        own_routes: ASGIApp,
        urls: ASGIApp | None = None,
        guard: RequestGuard | None = None,
    ) -> None:
        self.aws = aws
        self.own_routes = own_routes
        self.urls = urls  # function URLs (api/url_front.py): by host name or /_ember/url/
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.own_routes(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        path: str = scope["path"]
        seen = Seen.of(scope)
        urls = self.urls
        function_url = urls is not None and url_front.addressed(scope, seen.host)
        if self.guard is not None:
            refusal = self.guard.check(scope, seen, function_url)
            if refusal is not None:
                await refusal.response(request_id)(scope, receive, send)
                return
        if urls is not None and function_url:
            scope.setdefault("state", {})["request_id"] = request_id
            await urls(scope, receive, send)
            return
        if path == "/health" or path == "/metrics" or path.startswith("/_ember/"):
            await self.own_routes(scope, receive, _stamping(send, request_id.encode()))
            return
        scope.setdefault("state", {})["request_id"] = request_id  # Invoke runs under this id
        try:
            response = await self.aws(Request(scope, receive))
        except ClientDisconnect:
            return  # gone mid-request (or its body timed out: http_protocol answered 400)
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], path)
            response = wire.error_response(ServiceError("Ember failed to handle the request."))
        response.headers["x-amzn-RequestId"] = request_id
        await response(scope, receive, send)


def _stamping(send: Send, request_id: bytes) -> Send:
    async def stamped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-amzn-requestid", request_id)]
        await send(message)

    return stamped


def build_app(platform: Platform) -> ASGIApp:
    lambda_api = LambdaApi(platform)
    services: dict[str, ServiceHandler] = {"lambda": lambda_api, "logs": LogsApi(platform)}
    services["monitoring"] = CloudWatchApi(platform)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "runtimes": sorted(platform.runtimes)})

    async def code(request: Request) -> Response:
        sha256 = request.path_params["sha256"]
        path = platform.packages.zip_path(sha256)
        ok = code_urls.verify(
            platform.secret,
            sha256,
            request.query_params.get("expires", ""),
            request.query_params.get("signature", ""),
        )
        if not ok or not path.exists():
            return JSONResponse({"message": "Access denied or expired"}, status_code=403)
        return FileResponse(path, media_type="application/zip")

    async def async_queues(request: Request) -> Response:
        """Per-function asynchronous queue figures (`ember queue`)."""
        return JSONResponse(
            {name: vars(row) for name, row in sorted(platform.dispatcher.stats().items())}
        )

    async def aws(request: Request) -> Response:
        scope = scope_of(request.headers, request.query_params)
        if scope is not None:
            service = scope.service
        elif request.headers.get("x-amz-target", "").startswith("Logs_"):
            service = "logs"  # an unsigned JSON-protocol call
        elif request.headers.get("x-amz-target", "").startswith("GraniteService"):
            service = "monitoring"
        else:
            service = "lambda"
        handler = services.get(service)
        if handler is None:
            return wire.error_response(
                _UnknownService(f"Ember does not serve the '{service}' service (yet).")
            )
        return await handler(request)

    own_routes = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/_ember/code/{sha256:str}.zip", code, methods=["GET"]),
            Route("/_ember/async", async_queues, methods=["GET"]),
            *metrics_routes(platform),
            *traces_api.routes(platform),
        ],
    )
    settings = platform.settings
    guard = RequestGuard(settings.host, settings.allowed_hosts)
    return EmberApp(aws, own_routes, url_front.UrlFront(platform), guard)


class _UnknownService(ResourceNotFound):
    error_type = "UnknownServiceException"
    status = 400


__all__ = ["EmberError", "build_app"]
