"""Asynchronous invocation settings: Put/Update/Get/Delete/List FunctionEventInvokeConfig(s)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ember.api.lambda_api import operation, page_after
from ember.functions.event_configs import EventConfig
from ember.platform import Platform


def _shape(platform: Platform, config: EventConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "LastModified": config.last_modified,
        "FunctionArn": platform.event_configs.arn(config),
    }
    doc.update(config.config)
    return doc


@operation("PutFunctionEventInvokeConfig")
async def put(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    config = platform.event_configs.put(
        params["FunctionName"], params.get("Qualifier"), params, merge=False
    )
    return _shape(platform, config)


@operation("UpdateFunctionEventInvokeConfig")
async def update(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    config = platform.event_configs.put(
        params["FunctionName"], params.get("Qualifier"), params, merge=True
    )
    return _shape(platform, config)


@operation("GetFunctionEventInvokeConfig")
async def get(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    return _shape(
        platform, platform.event_configs.get(params["FunctionName"], params.get("Qualifier"))
    )


@operation("DeleteFunctionEventInvokeConfig")
async def delete(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.event_configs.delete(params["FunctionName"], params.get("Qualifier"))


@operation("ListFunctionEventInvokeConfigs")
async def list_configs(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    page, marker = page_after(
        platform.event_configs.list(params["FunctionName"]),
        lambda c: c.qualifier,
        params.get("Marker"),
        params.get("MaxItems"),
    )
    return {"FunctionEventInvokeConfigs": [_shape(platform, c) for c in page], "NextMarker": marker}
