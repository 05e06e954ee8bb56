"""Invoke (POST /2015-03-31/functions/{FunctionName}/invocations)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from ember.api.lambda_api import operation
from ember.dispatch.invoker import InvokeRequest
from ember.errors import InvalidRequestContent, RequestEntityTooLarge
from ember.observe import trace_ids
from ember.platform import Platform


@operation("Invoke")
async def invoke(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    invocation_type = params.get("InvocationType") or "RequestResponse"
    payload: bytes = params.get("Payload") or b""
    if payload.strip():
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContent(
                f"Could not parse request body into json: Could not parse payload into json: {exc}"
            ) from None
    invoker = platform.invoker
    trace = trace_ids.from_headers(
        request.headers.get("x-amzn-trace-id"), request.headers.get("traceparent")
    )
    if invocation_type == "DryRun":
        record = invoker.resolve(params["FunctionName"], params.get("Qualifier"))
        return {"StatusCode": 204, "ExecutedVersion": record.version}
    if invocation_type == "Event":
        limit = platform.settings.limits.async_payload_bytes
        if len(payload) > limit:
            raise RequestEntityTooLarge(
                f"{len(payload)} byte payload is too large for the Event invocation type (limit {limit} bytes)"
            )
        record = invoker.resolve(params["FunctionName"], params.get("Qualifier"))
        qualifier = (
            params.get("Qualifier")
            or platform.functions.parse_ref(params["FunctionName"]).qualifier
        )
        await platform.dispatcher.submit(record.name, qualifier, payload, trace)
        return {"StatusCode": 202}
    result = await invoker.invoke(
        InvokeRequest(
            function=params["FunctionName"],
            qualifier=params.get("Qualifier"),
            payload=payload,
            client_context=params.get("ClientContext"),
            trace_id=trace,
            tail=params.get("LogType") == "Tail",
            request_id=request.state.request_id,
        )
    )
    return {
        "StatusCode": 200,
        "FunctionError": "Unhandled" if result.function_error else None,
        "LogResult": result.log_tail,
        "ExecutedVersion": result.executed_version,
        "Payload": result.payload,
    }
