"""Versions and aliases: PublishVersion, ListVersionsByFunction, Create/Get/Update/Delete/ListAliases."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ember.api.lambda_api import _config, decode_marker, encode_marker, operation
from ember.functions.model import Alias
from ember.platform import Platform


def _alias(platform: Platform, alias: Alias) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "AliasArn": platform.functions.arn(alias.function, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        doc["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return doc


def _weights(params: dict[str, Any]) -> dict[str, float] | None:
    if "RoutingConfig" not in params:
        return None
    return dict((params["RoutingConfig"] or {}).get("AdditionalVersionWeights") or {})


@operation("PublishVersion")
async def publish_version(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    record = await run_in_threadpool(
        platform.versions.publish,
        params["FunctionName"],
        params.get("CodeSha256"),
        params.get("Description"),
        params.get("RevisionId"),
    )
    return _config(platform, record)


@operation("ListVersionsByFunction")
async def list_versions(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    limit = min(int(params.get("MaxItems") or 50), 50)
    records, last = platform.versions.list_versions(
        params["FunctionName"], decode_marker(params.get("Marker")), limit
    )
    return {
        "Versions": [_config(platform, r, r.version) for r in records],
        "NextMarker": encode_marker(last),
    }


@operation("CreateAlias")
async def create_alias(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    alias = platform.versions.create_alias(
        params["FunctionName"],
        params["Name"],
        params["FunctionVersion"],
        params.get("Description"),
        _weights(params),
    )
    return _alias(platform, alias)


@operation("GetAlias")
async def get_alias(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    return _alias(platform, platform.versions.get_alias(params["FunctionName"], params["Name"]))


@operation("UpdateAlias")
async def update_alias(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    alias = platform.versions.update_alias(
        params["FunctionName"],
        params["Name"],
        params.get("FunctionVersion"),
        params.get("Description"),
        _weights(params),
        params.get("RevisionId"),
    )
    if platform.store.list_provisioned(alias.function):
        platform.concurrency.reconcile(alias.function)  # provisioned instances follow the alias
    return _alias(platform, alias)


@operation("DeleteAlias")
async def delete_alias(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    ref = platform.functions.parse_ref(params["FunctionName"])
    provisioned = bool(platform.store.list_provisioned(ref.name))
    platform.versions.delete_alias(params["FunctionName"], params["Name"])
    if provisioned:
        platform.concurrency.reconcile(ref.name)


@operation("ListAliases")
async def list_aliases(
    platform: Platform, request: Request, params: dict[str, Any]
) -> dict[str, Any]:
    aliases = platform.versions.list_aliases(params["FunctionName"], params.get("FunctionVersion"))
    after = decode_marker(params.get("Marker"))
    if after is not None:
        aliases = [a for a in aliases if a.name > after]
    limit = min(int(params.get("MaxItems") or 50), 50)
    page = aliases[:limit]
    return {
        "Aliases": [_alias(platform, a) for a in page],
        "NextMarker": encode_marker(page[-1].name) if len(aliases) > limit else None,
    }
