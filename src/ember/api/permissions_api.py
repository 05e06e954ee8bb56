"""Resource-based policies: AddPermission, RemovePermission, GetPolicy."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from ember.api.lambda_api import operation
from ember.platform import Platform


@operation("AddPermission")
async def add_permission(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    statement = platform.policies.add(params["FunctionName"], params.get("Qualifier"), params)
    return {"Statement": orjson.dumps(statement).decode()}


@operation("RemovePermission")
async def remove_permission(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.policies.remove(
        params["FunctionName"],
        params.get("Qualifier"),
        params["StatementId"],
        params.get("RevisionId"),
    )


@operation("GetPolicy")
async def get_policy(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    document, revision = platform.policies.get(params["FunctionName"], params.get("Qualifier"))
    return {"Policy": orjson.dumps(document).decode(), "RevisionId": revision}
