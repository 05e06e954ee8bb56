"""botocore's installed service models as the source of truth for routes, inputs and errors.

Every operation of a rest-json model becomes a Route: method, a regex over the path built from
`requestUri`, and any literal query parameters the URI demands (`?find=LayerVersion`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.loaders

Shape = dict[str, Any]


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    literal_query: tuple[tuple[str, str], ...]
    input_shape: str | None
    output_shape: str | None
    status: int
    specificity: int

    def match(self, method: str, path: str, query: dict[str, list[str]]) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        for key, value in self.literal_query:
            if value not in query.get(key, []):
                return None
        return {k: unquote(v) for k, v in found.groupdict().items()}


class ServiceModel:
    def __init__(self, service: str, raw: dict[str, Any]) -> None:
        self.service = service
        self.metadata: dict[str, Any] = raw["metadata"]
        self.shapes: dict[str, Shape] = raw["shapes"]
        self.operations: dict[str, dict[str, Any]] = raw["operations"]
        self.routes = sorted(
            (self._route(name, op) for name, op in self.operations.items()),
            key=lambda r: -r.specificity,
        )

    def _route(self, name: str, op: dict[str, Any]) -> Route:
        uri: str = op["http"]["requestUri"]
        path, _, query = uri.partition("?")
        literal = tuple(
            (k, v) for k, _, v in (part.partition("=") for part in query.split("&") if part)
        )
        regex = ""
        for piece in re.split(r"(\{[^}]+\})", path.rstrip("/") or "/"):
            if piece.startswith("{"):
                label = piece[1:-1]
                greedy = label.endswith("+")
                label = label.rstrip("+")
                regex += f"(?P<{label}>.+)" if greedy else f"(?P<{label}>[^/]+)"
            else:
                regex += re.escape(piece)
        return Route(
            operation=name,
            method=op["http"]["method"],
            pattern=re.compile(regex + "/?"),
            literal_query=literal,
            input_shape=(op.get("input") or {}).get("shape"),
            output_shape=(op.get("output") or {}).get("shape"),
            status=int(op["http"].get("responseCode", 200)),
            specificity=len(path) * 10 + len(literal),
        )

    def find_route(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path, query)
            if params is not None:
                return route, params
        return None

    def path_exists(self, path: str) -> bool:
        return any(route.pattern.fullmatch(path) for route in self.routes)

    def error_status(self, error_type: str) -> int | None:
        shape = self.shapes.get(error_type)
        if shape and shape.get("exception"):
            return int(shape.get("error", {}).get("httpStatusCode", 400))
        return None


@cache
def load(service: str) -> ServiceModel:
    loader = botocore.loaders.create_loader()
    return ServiceModel(service, loader.load_service_model(service, "service-2"))
