"""The Lambda REST API (2015-03-31): one small async handler per operation.

Routing, parameter parsing, model validation and response serialization are generic (driven by
botocore's model in service_model/wire/validation); the handlers here only map parameters onto
the platform's services and records back onto Lambda's shapes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ember.api import code_urls, wire
from ember.api.function_shapes import configuration, record_fields
from ember.api.service_model import ServiceModel, load
from ember.api.validation import validate
from ember.errors import (
    EmberError,
    InvalidParameterValue,
    NotImplementedOperation,
    ResourceNotFound,
)
from ember.functions.model import LATEST, FunctionRecord
from ember.functions.naming import version_number
from ember.platform import Platform

T = TypeVar("T")
Handler = Callable[[Platform, Request, dict[str, Any]], Awaitable[dict[str, Any] | None]]
HANDLERS: dict[str, Handler] = {}
BODY_LIMITS: dict[str, int] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def _config(
    platform: Platform, record: FunctionRecord, qualifier: str | None = None
) -> dict[str, Any]:
    """A FunctionConfiguration; its ARN carries `qualifier` (a published version's always does)."""
    if qualifier is None and record.version != LATEST:
        qualifier = record.version
    return configuration(record, platform.functions.arn(record.name, qualifier))


def _zip_from(code: dict[str, Any]) -> bytes:
    if code.get("ImageUri"):
        raise InvalidParameterValue(
            "Container images are not supported by Ember: upload a .zip (ZipFile)."
        )
    if code.get("S3Bucket") or code.get("S3Key"):
        raise InvalidParameterValue(
            "Code from S3 is not supported by Ember yet: upload the .zip as ZipFile."
        )
    data = code.get("ZipFile")
    if not data:
        raise InvalidParameterValue(
            "Please provide a source for function code: ZipFile is required."
        )
    return bytes(data)


def _refuse_publish(params: dict[str, Any]) -> None:
    if params.get("PublishTo"):
        raise InvalidParameterValue(
            "PublishTo (LATEST_PUBLISHED) is not supported by Ember: use Publish."
        )


@operation("CreateFunction")
async def create_function(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    if params.get("PackageType", "Zip") != "Zip":
        raise InvalidParameterValue("PackageType Image is not supported by Ember: use Zip.")
    _refuse_publish(params)
    zip_bytes = _zip_from(params["Code"])
    fields = record_fields(params)
    tags = platform.tags.checked(dict(params.get("Tags") or {}))
    record = await run_in_threadpool(
        platform.functions.create, params["FunctionName"], zip_bytes, fields
    )
    platform.tags.put(record.name, tags)
    if params.get("Publish"):
        record = await run_in_threadpool(platform.versions.publish, record.name)
    return _config(platform, record)


@operation("GetFunction")
async def get_function(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    record = platform.functions.get(params["FunctionName"], params.get("Qualifier"))
    base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    qualifier = platform.functions.qualifier_of(params["FunctionName"], params.get("Qualifier"))
    result: dict[str, Any] = {
        "Configuration": _config(platform, record, qualifier),
        "Code": {
            "RepositoryType": "S3",
            "Location": base + code_urls.signed_path(platform.secret, record.code_sha256),
        },
    }
    tags = platform.tags.get(record.name)
    if tags:
        result["Tags"] = tags
    reserved = platform.invoker.limiter.reserved.get(record.name)
    if reserved is not None:
        result["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
    return result


@operation("GetFunctionConfiguration")
async def get_function_configuration(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    record = platform.functions.get(params["FunctionName"], params.get("Qualifier"))
    return _config(
        platform,
        record,
        platform.functions.qualifier_of(params["FunctionName"], params.get("Qualifier")),
    )


@operation("UpdateFunctionCode")
async def update_function_code(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    _refuse_publish(params)
    zip_bytes = _zip_from(params)
    if params.get("Architectures"):
        record_fields({"Architectures": params["Architectures"]})
    record = await run_in_threadpool(
        platform.functions.update_code,
        params["FunctionName"],
        zip_bytes,
        params.get("RevisionId"),
        bool(params.get("DryRun")),
    )
    if params.get("Publish") and not params.get("DryRun"):
        record = await run_in_threadpool(platform.versions.publish, record.name)
    return _config(platform, record)


@operation("UpdateFunctionConfiguration")
async def update_function_configuration(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    record = await run_in_threadpool(
        platform.functions.update_configuration,
        params["FunctionName"],
        record_fields(params),
        params.get("RevisionId"),
    )
    return _config(platform, record)


@operation("DeleteFunction")
async def delete_function(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    platform.functions.delete(params["FunctionName"], params.get("Qualifier"))
    return {"StatusCode": 204}


def decode_marker(marker: str | None) -> str | None:
    if not marker:
        return None
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameterValue("Invalid pagination marker") from None


def encode_marker(name: str | None) -> str | None:
    return base64.urlsafe_b64encode(name.encode()).decode() if name else None


def page_after(
    items: list[T], key: Callable[[T], str], marker: str | None, max_items: int | None
) -> tuple[list[T], str | None]:
    """One page of `items` (sorted by `key`) after an opaque Marker, and the next Marker."""
    after = decode_marker(marker)
    if after is not None:
        items = [item for item in items if key(item) > after]
    limit = int(max_items or 50)
    page = items[:limit]
    return page, encode_marker(key(page[-1])) if len(items) > limit else None


@operation("ListFunctions")
async def list_functions(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    limit = min(int(params.get("MaxItems") or 50), 50)
    if params.get("FunctionVersion") == "ALL":
        return _list_all_versions(platform, params.get("Marker"), limit)
    records, last = platform.functions.list(decode_marker(params.get("Marker")), limit)
    return {
        "Functions": [_config(platform, r) for r in records],
        "NextMarker": encode_marker(last),
    }


def _list_all_versions(platform: Platform, marker: str | None, limit: int) -> dict[str, Any]:
    """ListFunctions with FunctionVersion=ALL: every version of every function (qualified ARNs)."""
    after: tuple[str, int] | None = None
    text = decode_marker(marker)
    if text is not None:
        name, _, version = text.rpartition(":")
        number = -1 if version == LATEST else version_number(version)
        if number is None:  # Ember writes `name:$LATEST` or `name:<number>`: this one is forged
            raise InvalidParameterValue("Invalid pagination marker")
        after = (name, number)
    records = platform.store.list_all_versions(after, limit + 1)
    more = len(records) > limit
    records = records[:limit]
    last = f"{records[-1].name}:{records[-1].version}" if more and records else None
    return {
        "Functions": [_config(platform, r, r.version) for r in records],
        "NextMarker": encode_marker(last),
    }


@operation("GetAccountSettings")
async def get_account_settings(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    limits = platform.settings.limits
    count, total = platform.store.code_usage()
    return {
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800,
            "CodeSizeUnzipped": limits.unzipped_bytes,
            "CodeSizeZipped": limits.zip_upload_bytes,
            "ConcurrentExecutions": limits.account_concurrency,
            "UnreservedConcurrentExecutions": platform.invoker.limiter.unreserved,
        },
        "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
    }


# Request bodies larger than these are refused (413) before they are read whole.
BODY_LIMITS.update({"CreateFunction": 70_167_211, "UpdateFunctionCode": 70_167_211})
DEFAULT_BODY_LIMIT = 1024 * 1024


class LambdaApi:
    """Routes a request to its operation, validates it against the model, runs the handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.model: ServiceModel = load("lambda")
        BODY_LIMITS.setdefault("Invoke", platform.settings.limits.sync_payload_bytes)

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except EmberError as error:
            return wire.error_response(error, self.model)

    async def _handle(self, request: Request) -> Response:
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        found = self.model.find_route(request.method, request.url.path, query)
        if found is None:
            if self.model.path_exists(request.url.path):
                raise InvalidParameterValue(
                    f"Method {request.method} is not allowed on {request.url.path}"
                )
            raise ResourceNotFound(f"Unknown path: {request.url.path}")
        route, path_params = found
        handler = HANDLERS.get(route.operation)
        if handler is None:
            raise NotImplementedOperation(
                f"The {route.operation} operation is not supported by Ember yet."
            )
        limit = BODY_LIMITS.get(route.operation, DEFAULT_BODY_LIMIT)
        body = await wire.read_body(request, limit, route.operation)
        params = wire.parse(self.model, route, request, path_params, body)
        if route.input_shape:
            validate(self.model, route.input_shape, params)
        result = await handler(self.platform, request, params)
        return wire.serialize(self.model, route, result)
