"""rest-json on the wire: request → parameters, result → response, both driven by the model."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ember.api.service_model import Route, ServiceModel, Shape
from ember.api.validation import TYPE_RANGES, drop_nulls
from ember.errors import EmberError, InvalidRequestContent, RequestEntityTooLarge, ValidationError

JSON_TYPE = "application/json"
DRAIN_BYTES = 256 * 1024 * 1024  # how much of a refused body is read (and dropped) before answering
_INTEGER = re.compile(
    r"-?[0-9]+", re.ASCII
)  # int() would also take ' 1', '1_000', non-ASCII digits


async def read_body(request: Request, limit: int, operation: str) -> bytes:
    """Read at most `limit` bytes; a larger body is refused without buffering all of it."""
    declared = request.headers.get("content-length")
    too_large = RequestEntityTooLarge(
        f"Request must be smaller than {limit} bytes for the {operation} operation"
    )
    chunks: list[bytes] = []
    size = 0
    refused = bool(declared and declared.isascii() and declared.isdigit() and int(declared) > limit)
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if refused or size > limit:
                # Keep reading (and dropping) the rest, up to a bound: a server that answers and
                # closes while the client is still sending resets the connection, and the client
                # never sees the 413.
                refused = True
                chunks.clear()
                if size > limit + DRAIN_BYTES:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away, or its body was broken HTTP (uvicorn answered 400 and closed):
        # a client error, whoever reads the answer — not an unhandled one.
        raise InvalidRequestContent("The request body could not be read.") from None
    if refused:
        raise too_large
    return b"".join(chunks)


def _scalar(model: ServiceModel, shape_name: str, raw: str, name: str) -> Any:
    """A URI, query or header value as its shape's type (its range is validate()'s concern)."""
    kind = model.shapes[shape_name]["type"]
    if kind in ("integer", "long"):
        constraint = None
        if not _INTEGER.fullmatch(raw):
            constraint = "Member must be a number"
        elif len(raw.lstrip("-")) > 20:  # past any 64-bit number (and int() refuses 4,300 digits)
            low, high = TYPE_RANGES[kind]
            constraint = "Member must have value " + (
                f"greater than or equal to {low}"
                if raw.startswith("-")
                else f"less than or equal to {high}"
            )
        if constraint:
            raise ValidationError(
                f"1 validation error detected: Value '{raw}' at '{name[:1].lower() + name[1:]}' "
                f"failed to satisfy constraint: {constraint}"
            )
        return int(raw)  # validate() checks the range of the shape and its type
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


def _decode_blobs(model: ServiceModel, shape_name: str, value: Any) -> Any:
    """JSON bodies carry blobs as base64; turn them into bytes where the model says blob."""
    shape = model.shapes[shape_name]
    kind = shape["type"]
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestContent("Could not decode base64 data in the request") from None
    if kind == "structure" and isinstance(value, dict):
        members = shape.get("members", {})
        return {
            k: _decode_blobs(model, members[k]["shape"], v) if k in members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_decode_blobs(model, shape["member"]["shape"], v) for v in value]
    return value


def parse(
    model: ServiceModel, route: Route, request: Request, path_params: dict[str, str], body: bytes
) -> dict[str, Any]:
    if route.input_shape is None:
        return {}
    shape: Shape = model.shapes[route.input_shape]
    members: dict[str, Any] = shape.get("members", {})
    params: dict[str, Any] = {}
    payload_member = shape.get("payload")
    for name, member in members.items():
        location = member.get("location")
        wire_name = member.get("locationName", name)
        if location == "uri":
            if wire_name in path_params:  # typed as the model says (a layer's VersionNumber)
                params[name] = _scalar(model, member["shape"], path_params[wire_name], name)
        elif location == "querystring":
            target = model.shapes[member["shape"]]
            if target["type"] == "list":
                values = request.query_params.getlist(wire_name)
                if values:
                    params[name] = values
            elif wire_name in request.query_params:
                params[name] = _scalar(
                    model, member["shape"], request.query_params[wire_name], name
                )
        elif location == "header" and wire_name in request.headers:
            params[name] = _scalar(model, member["shape"], request.headers[wire_name], name)
    if payload_member:
        target = model.shapes[members[payload_member]["shape"]]
        if target["type"] == "blob":
            params[payload_member] = body
        elif body.strip():
            payload_shape = members[payload_member]["shape"]
            params[payload_member] = _decode_blobs(
                model, payload_shape, drop_nulls(model, payload_shape, _json(body))
            )
        return params
    if body.strip():
        document = _json(body)
        if not isinstance(document, dict):
            raise InvalidRequestContent(
                "Could not parse request body into json: expected an object"
            )
        document = drop_nulls(model, route.input_shape, document)
        for name, value in document.items():
            member = members.get(name)
            if member is not None and "location" not in member:
                params[name] = _decode_blobs(model, member["shape"], value)
    return params


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None


def serialize(model: ServiceModel, route: Route, result: dict[str, Any] | None) -> Response:
    status = route.status
    headers: dict[str, str] = {}
    if route.output_shape is None or result is None:
        return Response(status_code=status if status != 200 else 204)
    shape: Shape = model.shapes[route.output_shape]
    members: dict[str, Any] = shape.get("members", {})
    document: dict[str, Any] = {}
    body: bytes | None = None
    payload_member = shape.get("payload")
    for name, value in result.items():
        if value is None:
            continue
        member = members.get(name, {})
        location = member.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers[member.get("locationName", name)] = str(value)
        elif name == payload_member:
            body = value if isinstance(value, bytes) else orjson.dumps(value)
        else:
            document[name] = value
    if body is None:
        # A shape whose body is one payload member sends nothing when it is absent (Invoke's 202).
        body = b"" if payload_member or (not document and status == 204) else orjson.dumps(document)
    if status == 204:
        return Response(status_code=204, headers=headers)
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def error_response(error: EmberError, model: ServiceModel | None = None) -> Response:
    """AWS's error form: the status, `X-Amzn-ErrorType`, and `{"Type", "message"}`.

    The error is answered, so its traceback (and its causes') is dropped: an error raised in a
    worker thread sits in a cycle (anyio's future → the error → its traceback → the frame that
    holds the future) that would keep the request's frames, and so its body, alive until the
    next full collection — 100 MB and more per refused 50 MB upload."""
    forget_traceback(error)
    status = error.status
    if model is not None and not error.fixed_status:
        status = model.error_status(error.error_type) or status
    body: dict[str, Any] = {
        "Type": "User" if status < 500 else "Service",
        "message": error.message,
    }
    body.update(error.fields)
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers={"X-Amzn-ErrorType": error.error_type},
        media_type=JSON_TYPE,
    )


def forget_traceback(error: BaseException) -> None:
    """Drop the tracebacks of `error` and of the errors it was raised from or during."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
