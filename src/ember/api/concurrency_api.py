"""Reserved and provisioned concurrency: Put/Get/DeleteFunctionConcurrency and
Put/Get/Delete/ListProvisionedConcurrencyConfig(s)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ember.api.lambda_api import decode_marker, encode_marker, operation
from ember.dispatch.concurrency import ProvisionedState
from ember.functions.model import ProvisionedConfig
from ember.functions.service import timestamp
from ember.platform import Platform


@operation("PutFunctionConcurrency")
async def put_concurrency(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    reserved = platform.concurrency.put_reserved(
        params["FunctionName"], params["ReservedConcurrentExecutions"]
    )
    return {"ReservedConcurrentExecutions": reserved}


@operation("GetFunctionConcurrency")
async def get_concurrency(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "ReservedConcurrentExecutions": platform.concurrency.get_reserved(params["FunctionName"])
    }


@operation("DeleteFunctionConcurrency")
async def delete_concurrency(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.concurrency.delete_reserved(params["FunctionName"])


def _provisioned(config: ProvisionedConfig, state: ProvisionedState) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": config.requested,
        "AvailableProvisionedConcurrentExecutions": state.allocated,
        "AllocatedProvisionedConcurrentExecutions": state.allocated,
        "Status": state.status,
        "LastModified": timestamp(config.last_modified),
    }
    if state.reason:
        doc["StatusReason"] = state.reason
    return doc


@operation("PutProvisionedConcurrencyConfig")
async def put_provisioned(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    config = platform.concurrency.put_provisioned(
        params["FunctionName"], params["Qualifier"], params["ProvisionedConcurrentExecutions"]
    )
    return _provisioned(config, platform.concurrency.state(config))


@operation("GetProvisionedConcurrencyConfig")
async def get_provisioned(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    config, state = platform.concurrency.get_provisioned(
        params["FunctionName"], params["Qualifier"]
    )
    return _provisioned(config, state)


@operation("DeleteProvisionedConcurrencyConfig")
async def delete_provisioned(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.concurrency.delete_provisioned(params["FunctionName"], params["Qualifier"])


@operation("ListProvisionedConcurrencyConfigs")
async def list_provisioned(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    configs = platform.concurrency.list_provisioned(params["FunctionName"])
    after = decode_marker(params.get("Marker"))
    if after is not None:
        configs = [(c, s) for c, s in configs if c.qualifier > after]
    limit = int(params.get("MaxItems") or 50)
    page = configs[:limit]
    return {
        "ProvisionedConcurrencyConfigs": [
            {"FunctionArn": platform.functions.arn(c.function, c.qualifier), **_provisioned(c, s)}
            for c, s in page
        ],
        "NextMarker": encode_marker(page[-1][0].qualifier) if len(configs) > limit else None,
    }
