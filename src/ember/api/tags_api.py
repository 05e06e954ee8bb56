"""Tags on functions: TagResource, UntagResource, ListTags (/2017-03-31/tags/{ARN})."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ember.api.lambda_api import operation
from ember.platform import Platform


@operation("TagResource")
async def tag_resource(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.tags.tag(params["Resource"], dict(params["Tags"]))


@operation("UntagResource")
async def untag_resource(platform: Platform, request: Request, params: dict[str, Any]) -> None:
    platform.tags.untag(params["Resource"], list(params["TagKeys"]))


@operation("ListTags")
async def list_tags(platform: Platform, request: Request, params: dict[str, Any]) -> dict[str, Any]:
    return {"Tags": platform.tags.list(params["Resource"])}
