"""The HTTP front of function URLs: a request in, an HTTP API payload 2.0 event, a response out.

Requests reach it by path (`/_ember/url/<url-id>/<path>`, the form CreateFunctionUrlConfig
returns by default) or by host name (`<url-id>.lambda-url.<region>.localhost:<port>`, any host
whose name contains `.lambda-url.` and that api/request_guard.py lets in); EmberApp hands them
over before any AWS service routing.

A page served by path shares its origin (`http://127.0.0.1:<port>`) with the management API, so
every such response carries `Content-Security-Policy: sandbox ...` without `allow-same-origin`:
the browser runs the document in an opaque origin, whose requests to the API carry `Origin:
null` and are refused. Scripts, forms and popups still work; cookies and storage do not (use the
host form, `--function-url-form host`, for pages that need them).

Order of work: find the URL → answer a CORS preflight from its Cors config → read the body →
authorize (NONE: the resource policy must allow anonymous `lambda:InvokeFunctionUrl` and
`lambda:InvokeFunction` via the URL; AWS_IAM: a valid SigV4 signature for this region and
`lambda` by a known access key, see api/sigv4.py) → build the event → invoke synchronously → map
the result back (statusCode, headers, cookies, body).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ember.api import sigv4, wire
from ember.dispatch.invoker import InvokeRequest
from ember.errors import (
    EmberError,
    InvalidRequestContent,
    RequestEntityTooLarge,
    ResourceNotFound,
    TooManyRequests,
)
from ember.functions.function_urls import PATH_PREFIX, FunctionUrl
from ember.functions.policies import ANONYMOUS
from ember.platform import Platform

log = logging.getLogger(__name__)

_HOST = re.compile(r"([a-z0-9]{32})\.lambda-url\.", re.IGNORECASE)
_PATH_PREFIX = PATH_PREFIX.encode()
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/graphql",
        "application/ld+json",
        "application/x-yaml",
        "application/yaml",
    }
)
# Response headers Ember sets itself (the function's values would corrupt the framing).
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# Every response to a request by path: the document gets an opaque origin (see above).
SANDBOX = (
    b"sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals "
    b"allow-downloads allow-top-navigation-by-user-activation"
)


def _host(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"host":
            return bytes(value)
    return b""


def addressed(scope: Scope, host: bytes | None = None) -> bool:
    """Is this HTTP request for a function URL (by host name or by path)? `host`: the request's
    Host header when the caller has it at hand."""
    if scope["path"].startswith(PATH_PREFIX):
        return True
    return b".lambda-url." in (_host(scope) if host is None else host).lower()


def by_path(scope: Scope) -> bool:
    """Addressed by path on a host of its own (not a function URL's name): to be sandboxed."""
    return scope["path"].startswith(PATH_PREFIX) and not _HOST.search(
        _host(scope).decode("latin-1")
    )


def _message(status: int, message: str | None) -> Response:
    return Response(
        orjson.dumps({"Message": message}), status_code=status, media_type="application/json"
    )


def _locate(scope: Scope) -> tuple[str, bytes]:
    """(url id, raw path as the function sees it) for a request."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    if raw.startswith(_PATH_PREFIX):
        rest = raw[len(_PATH_PREFIX) :]
        url_id, slash, path = rest.partition(b"/")
        return url_id.decode("latin-1").lower(), b"/" + path if slash else b"/"
    found = _HOST.search(_host(scope).decode("latin-1"))
    return (found[1].lower() if found else ""), raw


# -- CORS ----------------------------------------------------------------------------------


def _allowed_origin(cors: dict[str, Any], origin: str | None) -> str | None:
    if not origin:
        return None
    origins = cors.get("AllowOrigins") or []
    if "*" in origins:
        return origin if cors.get("AllowCredentials") else "*"
    for pattern in origins:
        if fnmatch.fnmatchcase(origin.lower(), pattern.lower()):
            return origin
    return None


def _cors_headers(
    cors: dict[str, Any] | None, origin: str | None, preflight: bool
) -> list[tuple[str, str]]:
    if not cors:
        return []
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return []
    headers = [("access-control-allow-origin", allowed)]
    if cors.get("AllowCredentials"):
        headers.append(("access-control-allow-credentials", "true"))
    if preflight:
        if cors.get("AllowMethods"):
            headers.append(
                ("access-control-allow-methods", ",".join(m.upper() for m in cors["AllowMethods"]))
            )
        if cors.get("AllowHeaders"):
            headers.append(("access-control-allow-headers", ",".join(cors["AllowHeaders"])))
        if cors.get("MaxAge") is not None:
            headers.append(("access-control-max-age", str(cors["MaxAge"])))
    elif cors.get("ExposeHeaders"):
        headers.append(("access-control-expose-headers", ",".join(cors["ExposeHeaders"])))
    if allowed != "*":
        headers.append(("vary", "Origin"))
    return headers


# -- the event -----------------------------------------------------------------------------


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml"))


def build_event(
    request: Request,
    config: FunctionUrl,
    raw_path: bytes,
    body: bytes,
    request_id: str,
    domain: str,
    account_id: str,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    path = raw_path.decode("latin-1")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    client = request.scope.get("client")
    event["requestContext"] = {
        "accountId": "anonymous" if authorizer is None else account_id,
        "apiId": config.url_id,
        **({"authorizer": authorizer} if authorizer else {}),
        "domainName": domain,
        "domainPrefix": config.url_id,
        "http": {
            "method": request.method,
            "path": path,
            "protocol": "HTTP/" + str(request.scope.get("http_version", "1.1")),
            "sourceIp": client[0] if client else "127.0.0.1",
            "userAgent": request.headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if body:
        text = None
        if _is_text(request.headers.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        event["body"] = text if text is not None else base64.b64encode(body).decode()
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


# -- the result ----------------------------------------------------------------------------


def _header_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def map_result(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) from a function's result, as Lambda maps it; ValueError when
    the result claims a response shape it does not follow."""
    try:
        value = orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError:
        return 200, [("content-type", "application/json")], payload
    if not (isinstance(value, dict) and "statusCode" in value):
        return 200, [("content-type", "application/json")], payload
    status = value["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {status!r}")
    headers: list[tuple[str, str]] = []
    for name, item in (value.get("headers") or {}).items():
        headers.append((str(name).lower(), _header_value(item)))
    for name, items in (value.get("multiValueHeaders") or {}).items():
        for item in items if isinstance(items, list) else [items]:
            headers.append((str(name).lower(), _header_value(item)))
    for cookie in value.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    body_value = value.get("body")
    if body_value is None:
        body = b""
    elif isinstance(body_value, str):
        if value.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body_value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("body is not valid base64") from None
        else:
            body = body_value.encode()
    else:
        body = orjson.dumps(body_value)
    return int(status), [(k, v) for k, v in headers if k not in _HOP_HEADERS], body


# -- the front -----------------------------------------------------------------------------


class UrlFront:
    """An ASGI app serving every function URL."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id: str = scope.setdefault("state", {}).setdefault("request_id", "")
        try:
            response = await self.serve(request, request_id)
        except Exception:
            log.exception("function URL request %s failed", request_id)
            response = _message(500, "Internal Server Error")
        response.headers["x-amzn-RequestId"] = request_id
        if by_path(scope):
            response.raw_headers.append((b"content-security-policy", SANDBOX))
        await response(scope, receive, send)

    async def serve(self, request: Request, request_id: str) -> Response:
        platform = self.platform
        url_id, raw_path = _locate(request.scope)
        config = platform.function_urls.by_id(url_id) if url_id else None
        if config is None:
            return _message(404, "Not Found")
        origin = request.headers.get("origin")
        if (
            request.method == "OPTIONS"
            and config.cors
            and "access-control-request-method" in request.headers
        ):
            response = Response(status_code=200)
            response.raw_headers.extend(_encode(_cors_headers(config.cors, origin, preflight=True)))
            return response
        cors = _cors_headers(config.cors, origin, preflight=False)
        try:
            body = await wire.read_body(
                request, platform.settings.limits.sync_payload_bytes, "InvokeFunctionUrl"
            )
        except RequestEntityTooLarge as error:
            return _with(_message(413, error.message), cors)
        except InvalidRequestContent:  # gone mid-body, or broken HTTP (uvicorn answered 400)
            return _with(_message(400, "Bad Request"), cors)
        authorizer = self._authorize(request, config, body)  # AWS_IAM signatures cover the body
        if authorizer is None:
            return _with(_message(403, "Forbidden"), cors)
        host = request.headers.get("host", "")
        domain = host.rsplit(":", 1)[0] if _HOST.search(host) else self._domain(config)
        event = build_event(
            request,
            config,
            raw_path,
            body,
            request_id,
            domain,
            platform.settings.account_id,
            authorizer or None,
        )
        payload = orjson.dumps(event)
        if len(payload) > platform.settings.limits.sync_payload_bytes:
            return _with(
                _message(
                    413,
                    "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
                ),
                cors,
            )
        try:
            result = await platform.invoker.invoke(
                InvokeRequest(
                    function=config.function,
                    qualifier=config.invoke_qualifier,
                    payload=payload,
                    trace_id=request.headers.get("x-amzn-trace-id"),
                    request_id=request_id,
                )
            )
        except TooManyRequests:
            return _with(_message(429, "Rate Exceeded."), cors)
        except ResourceNotFound:
            return _with(_message(404, "Not Found"), cors)
        except EmberError as error:
            log.warning("function URL %s: %s", url_id, error.message)
            return _with(_message(502, "Internal Server Error"), cors)
        if result.function_error:
            return _with(_message(502, "Internal Server Error"), cors)
        try:
            status, headers, content = map_result(result.payload)
        except ValueError as error:
            log.warning("function URL %s: the function's response is invalid: %s", url_id, error)
            return _with(_message(502, "Internal Server Error"), cors)
        if config.cors:  # the URL's CORS configuration overrides the function's own headers
            headers = [(k, v) for k, v in headers if not k.startswith("access-control-")]
        if content and not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        response = Response(content, status_code=status)
        response.raw_headers.extend(_encode(headers + cors))
        return response

    def _domain(self, config: FunctionUrl) -> str:
        return f"{config.url_id}.lambda-url.{self.platform.settings.region}.localhost"

    def _authorize(
        self, request: Request, config: FunctionUrl, body: bytes
    ) -> dict[str, Any] | None:
        """The event's requestContext.authorizer ({} for NONE) when allowed, else None."""
        platform = self.platform
        if config.auth_type == "NONE":
            policies = platform.policies
            qualifier = config.invoke_qualifier
            allowed = policies.allows(
                config.function,
                qualifier,
                ANONYMOUS,
                "lambda:InvokeFunctionUrl",
                {"lambda:FunctionUrlAuthType": "NONE"},
            ) and policies.allows(
                config.function,
                qualifier,
                ANONYMOUS,
                "lambda:InvokeFunction",
                {"lambda:InvokedViaFunctionUrl": "true"},
            )
            return {} if allowed else None
        try:
            key = sigv4.authenticate(
                sigv4.HttpRequest.from_scope(request.scope, body),
                platform.access_keys.find,
                platform.settings.region,
            )
        except sigv4.Refused as refused:
            log.info("function URL %s refused an AWS_IAM request: %s", config.url_id, refused)
            return None
        return {"iam": platform.access_keys.identity(key)}


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode()) for k, v in headers]


def _with(response: Response, headers: list[tuple[str, str]]) -> Response:
    response.raw_headers.extend(_encode(headers))
    return response
