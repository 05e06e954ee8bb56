"""Function URL configurations: Create/Get/Update/Delete FunctionUrlConfig, ListFunctionUrlConfigs.

The HTTP front that serves the URLs themselves is api/url_front.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ember.api.lambda_api import operation, page_after
from ember.functions.function_urls import FunctionUrl, iso_time
from ember.platform import Platform


def _shape(
    platform: Platform, request: Request, config: FunctionUrl, modified: bool = True
) -> dict[str, Any]:
    urls = platform.function_urls
    doc: dict[str, Any] = {
        "FunctionUrl": urls.url(config, request.headers.get("host")),
        "FunctionArn": urls.arn(config),
        "AuthType": config.auth_type,
        "CreationTime": iso_time(config.created),
        "InvokeMode": config.invoke_mode,
    }
    if config.cors:
        doc["Cors"] = config.cors
    if modified:
        doc["LastModifiedTime"] = iso_time(config.last_modified)
    return doc


@operation("CreateFunctionUrlConfig")
async def create(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    config = platform.function_urls.create(
        params["FunctionName"],
        params.get("Qualifier"),
        params["AuthType"],
        params.get("Cors"),
        params.get("InvokeMode"),
    )
    return _shape(platform, request, config, modified=False)


@operation("GetFunctionUrlConfig")
async def get(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    return _shape(
        platform,
        request,
        platform.function_urls.get(params["FunctionName"], params.get("Qualifier")),
    )


@operation("UpdateFunctionUrlConfig")
async def update(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    config = platform.function_urls.update(params["FunctionName"], params.get("Qualifier"), params)
    return _shape(platform, request, config)


@operation("DeleteFunctionUrlConfig")
async def delete(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.function_urls.delete(params["FunctionName"], params.get("Qualifier"))


@operation("ListFunctionUrlConfigs")
async def list_configs(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    page, marker = page_after(
        platform.function_urls.list(params["FunctionName"]),
        lambda c: c.qualifier or "$LATEST",
        params.get("Marker"),
        params.get("MaxItems"),
    )
    return {
        "FunctionUrlConfigs": [_shape(platform, request, c) for c in page],
        "NextMarker": marker,
    }
