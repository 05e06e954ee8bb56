"""Validate request parameters against the service model's shapes, as AWS's front end does.

Violations are collected (not just the first) and reported in AWS's words:
`2 validation errors detected: Value '100' at 'memorySize' failed to satisfy constraint:
Member must have value greater than or equal to 128; ...`

Beyond the model's own traits, a value must fit its shape's type: an `integer` is 32 bits and a
`long` 64 bits (as in AWS's Java front ends; and SQLite's INTEGER is 64 bits), so a number
outside that range fails like a `max`/`min` trait would. JSON `null` for a structure member
means the member is absent (`drop_nulls`); a null inside a list or map is a violation.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from functools import cache, lru_cache
from typing import Any

from ember.api.service_model import ServiceModel, Shape
from ember.errors import raise_if_any

# The range of each integral shape type (Java's int and long).
TYPE_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


@lru_cache(maxsize=512)
def _pattern(regex: str) -> re.Pattern[str]:
    # ASCII: as in Java's regexes, \d, \w and \s match ASCII characters only (not Arabic-Indic digits).
    return re.compile(_translate(regex), re.DOTALL | re.ASCII)


_PROPERTY = re.compile(r"\\p\{([A-Za-z]+)\}")


@cache
def _categories() -> dict[str, list[tuple[int, int]]]:
    """Code point ranges of every Unicode general category (one pass, on first use)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    current, start = unicodedata.category("\0"), 0
    for code in range(1, sys.maxunicode + 2):
        category = unicodedata.category(chr(code)) if code <= sys.maxunicode else ""
        if category != current:
            ranges.setdefault(current, []).append((start, code - 1))
            current, start = category, code
    return ranges


@cache
def _property_class(name: str) -> str:
    """A character-class body for `\\p{name}`: a general category (Lu) or a family of them (L)."""
    return "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}"
        for category, spans in _categories().items()
        if category == name or category[0] == name
        for low, high in spans
    )


def _translate(regex: str) -> str:
    """The model's patterns are Java regexes; Python's re lacks `\\p{L}` (TagKey, TagValue).
    Expand each into explicit ranges, inside or outside a character class."""
    if "\\p{" not in regex:
        return regex
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(regex):
        if regex[i] == "\\":
            found = _PROPERTY.match(regex, i)
            if found:
                body = _property_class(found.group(1))
                out.append(body if in_class else f"[{body}]")
                i = found.end()
            else:
                out.append(regex[i : i + 2])
                i += 2
            continue
        if regex[i] == "[":
            in_class = True
        elif regex[i] == "]":
            in_class = False
        out.append(regex[i])
        i += 1
    return "".join(out)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any, shape: Shape) -> str:
    if shape.get("sensitive"):
        return "Value"
    if isinstance(value, bool):
        return f"Value '{str(value).lower()}'"
    if isinstance(value, (dict, list)):
        return "Value"
    return f"Value '{value}'"


class _Checker:
    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.problems: list[str] = []

    def fail(self, value: Any, shape: Shape, path: str, constraint: str) -> None:
        self.problems.append(
            f"{_show(value, shape)} at '{path}' failed to satisfy constraint: {constraint}"
        )

    def check(self, value: Any, shape_name: str, path: str) -> None:
        shape = self.model.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            self.structure(value, shape, path)
        elif kind == "string":
            self.string(value, shape, path)
        elif kind in ("integer", "long"):
            self.integer(value, shape, path, *TYPE_RANGES[kind])
        elif kind in ("double", "float"):
            self.number(value, shape, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.fail(value, shape, path, "Member must be a boolean")
        elif kind == "list":
            self.list(value, shape, path)
        elif kind == "map":
            self.map(value, shape, path)
        elif kind == "blob" and not isinstance(value, (bytes, bytearray)):
            self.fail(value, shape, path, "Member must be binary data")

    def structure(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, shape, path, "Member must be an object")
            return
        members: dict[str, Any] = shape.get("members", {})
        for required in shape.get("required", []):
            if value.get(required) is None:
                self.problems.append(
                    f"Value null at '{self.join(path, required)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        for key, item in value.items():
            member = members.get(key)
            if member is None or item is None:
                continue
            self.check(item, member["shape"], self.join(path, key))

    @staticmethod
    def join(path: str, member: str) -> str:
        return f"{path}.{_camel(member)}" if path else _camel(member)

    def string(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, str):
            self.fail(value, shape, path, "Member must be a string")
            return
        if "enum" in shape and value not in shape["enum"]:
            self.fail(
                value,
                shape,
                path,
                f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]",
            )
            return
        if "min" in shape and len(value) < shape["min"]:
            self.fail(
                value,
                shape,
                path,
                f"Member must have length greater than or equal to {shape['min']}",
            )
        if "max" in shape and len(value) > shape["max"]:
            self.fail(
                value, shape, path, f"Member must have length less than or equal to {shape['max']}"
            )
        if "pattern" in shape and not _pattern(shape["pattern"]).fullmatch(value):
            self.fail(
                value,
                shape,
                path,
                f"Member must satisfy regular expression pattern: {shape['pattern']}",
            )

    def integer(self, value: Any, shape: Shape, path: str, low: int, high: int) -> None:
        # JSON parsers hand integers beyond 64 bits over as floats: still integers out of range.
        huge = (
            isinstance(value, float)
            and math.isfinite(value)
            and value.is_integer()
            and not low <= value <= high
        )
        if isinstance(value, bool) or not (isinstance(value, int) or huge):
            self.fail(value, shape, path, "Member must be a number")
            return
        if value < max(low, shape.get("min", low)):
            self.fail(
                value,
                shape,
                path,
                f"Member must have value greater than or equal to {shape.get('min', low)}",
            )
        if value > min(high, shape.get("max", high)):
            self.fail(
                value,
                shape,
                path,
                f"Member must have value less than or equal to {shape.get('max', high)}",
            )

    def number(self, value: Any, shape: Shape, path: str) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            self.fail(value, shape, path, "Member must be a number")
            return
        if "min" in shape and value < shape["min"]:
            self.fail(
                value,
                shape,
                path,
                f"Member must have value greater than or equal to {shape['min']}",
            )
        if "max" in shape and value > shape["max"]:
            self.fail(
                value, shape, path, f"Member must have value less than or equal to {shape['max']}"
            )

    def list(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, list):
            self.fail(value, shape, path, "Member must be a list")
            return
        if "min" in shape and len(value) < shape["min"]:
            self.fail(
                value,
                shape,
                path,
                f"Member must have length greater than or equal to {shape['min']}",
            )
        if "max" in shape and len(value) > shape["max"]:
            self.fail(
                value, shape, path, f"Member must have length less than or equal to {shape['max']}"
            )
        member = shape["member"]["shape"]
        for item in value:
            if item is None:
                self.problems.append(
                    f"Value null at '{path}' failed to satisfy constraint: Member must not be null"
                )
            else:
                self.check(item, member, path)

    def map(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, shape, path, "Member must be a map")
            return
        key_shape = self.model.shapes[shape["key"]["shape"]]
        inner = _Checker(self.model)
        for key, item in value.items():
            inner.string(key, key_shape, path)
            if item is None:
                self.problems.append(
                    f"Value null at '{path}' failed to satisfy constraint: Map value must not be null"
                )
            else:
                self.check(item, shape["value"]["shape"], path)
        if inner.problems:
            constraint = inner.problems[0].split("failed to satisfy constraint: ", 1)[1]
            self.problems.append(
                f"Value at '{path}' failed to satisfy constraint: Map keys must satisfy "
                f"constraint: [{constraint}]"
            )


def drop_nulls(model: ServiceModel, shape_name: str, value: Any) -> Any:
    """`value` without the structure members that are JSON null (AWS reads them as absent),
    at every depth. Nulls in lists and maps stay, for `validate` to refuse."""
    shape = model.shapes[shape_name]
    kind = shape["type"]
    if kind == "structure" and isinstance(value, dict):
        members = shape.get("members", {})
        return {
            key: drop_nulls(model, members[key]["shape"], item) if key in members else item
            for key, item in value.items()
            if item is not None
        }
    if kind == "list" and isinstance(value, list):
        return [drop_nulls(model, shape["member"]["shape"], item) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {
            key: drop_nulls(model, shape["value"]["shape"], item) for key, item in value.items()
        }
    return value


def validate(model: ServiceModel, shape_name: str, params: dict[str, Any]) -> None:
    checker = _Checker(model)
    checker.check(params, shape_name, "")
    raise_if_any(checker.problems)
