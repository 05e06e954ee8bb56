"""Layers: Publish/Get/GetByArn/List/Delete layer versions, ListLayers, layer version policies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ember.api import code_urls
from ember.api.function_shapes import code_sha256_b64
from ember.api.lambda_api import BODY_LIMITS, decode_marker, encode_marker, operation
from ember.errors import InvalidParameterValue
from ember.functions.layers import LayerVersion
from ember.functions.naming import version_number
from ember.functions.service import timestamp
from ember.platform import Platform

BODY_LIMITS["PublishLayerVersion"] = 70_167_211  # a 50 MB zip, base64 in JSON


def _listed(platform: Platform, layer: LayerVersion) -> dict[str, Any]:
    """A LayerVersionsListItem (members without a value are left out, as AWS does)."""
    item = {
        "LayerVersionArn": platform.functions.layers.version_arn(layer.name, layer.version),
        "Version": layer.version,
        "Description": layer.description or None,
        "CreatedDate": timestamp(layer.created),
        "CompatibleRuntimes": list(layer.compatible_runtimes) or None,
        "LicenseInfo": layer.license_info,
        "CompatibleArchitectures": list(layer.compatible_architectures) or None,
    }
    return {key: value for key, value in item.items() if value is not None}


def _document(platform: Platform, request: Request, layer: LayerVersion) -> dict[str, Any]:
    """GetLayerVersion's (and PublishLayerVersion's) response."""
    base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    doc = _listed(platform, layer)
    doc.update(
        {
            "Content": {
                "Location": base + code_urls.signed_path(platform.secret, layer.sha256),
                "CodeSha256": code_sha256_b64(layer.sha256),
                "CodeSize": layer.code_size,
            },
            "LayerArn": platform.functions.layers.layer_arn(layer.name),
            "Description": layer.description,
        }
    )
    return doc


def _zip_from(content: dict[str, Any]) -> bytes:
    if content.get("S3Bucket") or content.get("S3Key"):
        raise InvalidParameterValue(
            "Layer content from S3 is not supported by Ember yet: upload the .zip as ZipFile."
        )
    data = content.get("ZipFile")
    if not data:
        raise InvalidParameterValue(
            "Please provide a source for the layer content: ZipFile is required."
        )
    return bytes(data)


@operation("PublishLayerVersion")
async def publish(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    zip_bytes = _zip_from(params["Content"])
    fields = {
        "description": params.get("Description") or "",
        "license_info": params.get("LicenseInfo"),
        "compatible_runtimes": tuple(params.get("CompatibleRuntimes") or ()),
        "compatible_architectures": tuple(params.get("CompatibleArchitectures") or ()),
    }
    layer = await run_in_threadpool(
        platform.functions.layers.publish, params["LayerName"], zip_bytes, fields
    )
    return _document(platform, request, layer)


@operation("GetLayerVersion")
async def get(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    layer = platform.functions.layers.get(params["LayerName"], int(params["VersionNumber"]))
    return _document(platform, request, layer)


@operation("GetLayerVersionByArn")
async def get_by_arn(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    return _document(platform, request, platform.functions.layers.get_by_arn(params["Arn"]))


@operation("DeleteLayerVersion")
async def delete(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.functions.layers.delete(params["LayerName"], int(params["VersionNumber"]))


def _page_size(params: dict[str, Any]) -> int:
    return int(params.get("MaxItems") or 50)


@operation("ListLayerVersions")
async def list_versions(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    versions = platform.functions.layers.versions(
        params["LayerName"], params.get("CompatibleRuntime"), params.get("CompatibleArchitecture")
    )
    after = decode_marker(params.get("Marker"))
    if after is not None:
        number = version_number(after)
        if number is None:
            raise InvalidParameterValue("Invalid pagination marker")
        versions = [v for v in versions if v.version < number]  # newest first
    limit = _page_size(params)
    page = versions[:limit]
    return {
        "LayerVersions": [_listed(platform, v) for v in page],
        "NextMarker": encode_marker(str(page[-1].version)) if len(versions) > limit else None,
    }


@operation("ListLayers")
async def list_layers(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    layers = platform.functions.layers.latest_matching(
        params.get("CompatibleRuntime"), params.get("CompatibleArchitecture")
    )
    after = decode_marker(params.get("Marker"))
    if after is not None:
        layers = [layer for layer in layers if layer.name > after]
    limit = _page_size(params)
    page = layers[:limit]
    return {
        "Layers": [
            {
                "LayerName": layer.name,
                "LayerArn": platform.functions.layers.layer_arn(layer.name),
                "LatestMatchingVersion": _listed(platform, layer),
            }
            for layer in page
        ],
        "NextMarker": encode_marker(page[-1].name) if len(layers) > limit else None,
    }


@operation("AddLayerVersionPermission")
async def add_permission(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    statement, revision = platform.functions.layers.add_permission(
        params["LayerName"],
        int(params["VersionNumber"]),
        params["StatementId"],
        params["Action"],
        params["Principal"],
        params.get("OrganizationId"),
        params.get("RevisionId"),
    )
    return {"Statement": orjson.dumps(statement).decode(), "RevisionId": revision}


@operation("RemoveLayerVersionPermission")
async def remove_permission(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.functions.layers.remove_permission(
        params["LayerName"],
        int(params["VersionNumber"]),
        params["StatementId"],
        params.get("RevisionId"),
    )


@operation("GetLayerVersionPolicy")
async def get_policy(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    document, revision = platform.functions.layers.policy(
        params["LayerName"], int(params["VersionNumber"])
    )
    return {"Policy": document, "RevisionId": revision}
