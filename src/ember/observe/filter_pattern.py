"""CloudWatch Logs filter patterns, compiled once into a predicate over a message string.

The syntax (AWS's "Filter pattern syntax" page) comes in four forms, picked by the first
character of the pattern:

- terms: ``ERROR Exception`` (all must occur), ``"quoted phrase"``, ``-exclusion``, and
  ``?any ?of`` (at least one must occur). Matching is case-sensitive, by substring.
- JSON: ``{ $.level = "ERROR" && ($.latency > 100 || $.retry IS TRUE) }`` with selectors
  (``$.a.b``, ``$.list[0].c``), ``=``/``!=`` on strings (``*`` wildcards, ``%regex%``),
  numeric ``= != < <= > >=``, ``IS TRUE|FALSE|NULL``, ``EXISTS``, ``NOT EXISTS``, ``&&``, ``||``
  and parentheses. Events that are not JSON objects never match.
- space-delimited: ``[ip, user, ..., status = 4*, bytes > 1000]``, fields split on spaces
  (``"…"`` and ``[…]`` are one field each), ``...`` for any number of fields.
- regex: ``%ERROR|WARN%``.

Besides the predicate, a compiled pattern tells the store which substrings an event must (or
must not) contain, so that a search can push that cheap test down to SQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

Predicate = Callable[[str], bool]


class InvalidFilterPattern(ValueError):
    """The pattern is not valid CloudWatch filter-pattern syntax."""


@dataclass(frozen=True)
class Prefilter:
    """Substring facts every matching event satisfies (each is a necessary condition)."""

    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()  # empty = no constraint
    none_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class FilterPattern:
    text: str
    kind: str  # "all", "terms", "json", "delimited", "regex"
    predicate: Predicate
    prefilter: Prefilter = field(default_factory=Prefilter)
    exact: bool = False  # True when the prefilter alone decides a match

    def matches(self, message: str) -> bool:
        return self.predicate(message)


def compile_pattern(text: str | None) -> FilterPattern:
    source = text or ""
    stripped = source.strip()
    if not stripped:
        return FilterPattern(source, "all", _always, exact=True)
    if stripped.startswith("{"):
        return _compile_json(source, stripped)
    if stripped.startswith("["):
        return _compile_delimited(source, stripped)
    if len(stripped) >= 2 and stripped.startswith("%") and stripped.endswith("%"):
        regex = _regex(stripped[1:-1])
        return FilterPattern(source, "regex", lambda m: regex.search(m) is not None)
    return _compile_terms(source, stripped)


def _always(message: str) -> bool:
    return True


def _regex(body: str) -> re.Pattern[str]:
    if not body:
        raise InvalidFilterPattern("Invalid regular expression: an empty %% pattern")
    try:
        return re.compile(body)
    except re.error as exc:
        raise InvalidFilterPattern(f"Invalid regular expression %{body}%: {exc}") from None


# -- terms ---------------------------------------------------------------------------------


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """The string starting at text[i] == '"'; returns (value, index after the closing quote)."""
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise InvalidFilterPattern(f"Invalid filter pattern: unterminated quote in {text!r}")


def _compile_terms(source: str, text: str) -> FilterPattern:
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        sign = ""
        if text[i] in "-?" and i + 1 < len(text) and not text[i + 1].isspace():
            sign = text[i]
            i += 1
        if text[i] == '"':
            term, i = _read_quoted(text, i)
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] != '"':
                i += 1
            term = text[start:i]
        if not term:
            continue
        {"": required, "?": optional, "-": excluded}[sign].append(term)
    req, opt, exc = tuple(required), tuple(optional), tuple(excluded)

    def predicate(message: str) -> bool:
        return (
            all(t in message for t in req)
            and (not opt or any(t in message for t in opt))
            and not any(t in message for t in exc)
        )

    return FilterPattern(source, "terms", predicate, Prefilter(req, opt, exc), exact=True)


# -- values shared by JSON and space-delimited patterns --------------------------------------

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# Characters no JSON encoder escapes (some escape '/', '<', '>', '&' or non-ASCII): a literal
# made only of these appears verbatim in the raw event, so SQL can look for it.
_VERBATIM = re.compile(r"[A-Za-z0-9 _.:@#,;=+-]+")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Value:
    """The right-hand side of a comparison."""

    text: str
    quoted: bool = False
    regex: re.Pattern[str] | None = None

    @cached_property
    def number(self) -> float | None:
        if self.quoted or self.regex is not None or not _NUMBER.fullmatch(self.text):
            return None
        return float(self.text)

    def string_matches(self, candidate: str) -> bool:
        if self.regex is not None:
            return self.regex.search(candidate) is not None
        if "*" in self.text:
            return _wildcard(self.text).fullmatch(candidate) is not None
        return candidate == self.text

    def literals(self) -> tuple[str, ...]:
        """Substrings any string this value matches must contain."""
        if self.regex is not None:
            return ()
        return tuple(p for p in self.text.split("*") if p and _VERBATIM.fullmatch(p))


_WILDCARDS: dict[str, re.Pattern[str]] = {}


def _wildcard(text: str) -> re.Pattern[str]:
    found = _WILDCARDS.get(text)
    if found is None:
        found = re.compile(".*".join(re.escape(p) for p in text.split("*")), re.DOTALL)
        if len(_WILDCARDS) < 1024:
            _WILDCARDS[text] = found
    return found


_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(actual: Any, op: str, value: Value) -> bool:
    """Compare a JSON value (or a delimited field, a str) with a pattern value."""
    if actual is None or isinstance(actual, (dict, list)):
        return False
    target = value.number
    if op not in ("=", "!="):
        if target is None:
            raise InvalidFilterPattern(
                f"Invalid filter pattern: {op} needs a number, got {value.text!r}"
            )
        number = _as_number(actual)
        return number is not None and _NUMERIC_OPS[op](number, target)
    if target is not None:
        number = _as_number(actual)
        if number is not None:
            return _NUMERIC_OPS[op](number, target)
    matched = value.string_matches(_as_text(actual))
    return matched if op == "=" else not matched


def _as_number(actual: Any) -> float | None:
    if isinstance(actual, bool):
        return None
    if isinstance(actual, (int, float)):
        return float(actual)
    if isinstance(actual, str) and _NUMBER.fullmatch(actual):
        number = float(actual)
        return number if math.isfinite(number) else None
    return None


def _as_text(actual: Any) -> str:
    if isinstance(actual, bool):
        return "true" if actual else "false"
    if isinstance(actual, float) and actual.is_integer():
        return str(int(actual))
    return str(actual)


# -- JSON patterns ---------------------------------------------------------------------------

_MISSING = object()
Step = str | int


@dataclass(frozen=True)
class _Node:
    evaluate: Callable[[Any], bool]
    required: frozenset[str]  # substrings every matching raw event contains


class _JsonParser:
    OPERATORS = ("!=", "<=", ">=", "=", "<", ">")

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, why: str) -> InvalidFilterPattern:
        return InvalidFilterPattern(
            f"Invalid filter pattern: {why} at position {self.i} of {self.text!r}"
        )

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.i)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def keyword(self, word: str) -> bool:
        self.skip()
        end = self.i + len(word)
        if self.text[self.i : end].upper() == word and (
            end >= len(self.text) or not self.text[end].isalnum()
        ):
            self.i = end
            return True
        return False

    def parse(self) -> _Node:
        if not self.take("{"):
            raise self.fail("expected '{'")
        node = self.expression()
        if not self.take("}"):
            raise self.fail("expected '}'")
        self.skip()
        if self.i != len(self.text):
            raise self.fail("unexpected text after '}'")
        return node

    def expression(self) -> _Node:
        nodes = [self.conjunction()]
        while self.take("||"):
            nodes.append(self.conjunction())
        if len(nodes) == 1:
            return nodes[0]
        parts = tuple(n.evaluate for n in nodes)
        return _Node(
            lambda doc: any(p(doc) for p in parts),
            frozenset.intersection(*(n.required for n in nodes)),
        )

    def conjunction(self) -> _Node:
        nodes = [self.unary()]
        while self.take("&&"):
            nodes.append(self.unary())
        if len(nodes) == 1:
            return nodes[0]
        parts = tuple(n.evaluate for n in nodes)
        return _Node(
            lambda doc: all(p(doc) for p in parts),
            frozenset.union(*(n.required for n in nodes)),
        )

    def unary(self) -> _Node:
        if self.take("("):
            node = self.expression()
            if not self.take(")"):
                raise self.fail("expected ')'")
            return node
        return self.condition()

    def selector(self) -> tuple[Step, ...]:
        self.skip()
        if not self.take("$"):
            raise self.fail("expected a selector such as $.field")
        steps: list[Step] = []
        text = self.text
        while self.i < len(text):
            ch = text[self.i]
            if ch == ".":
                self.i += 1
                if self.i < len(text) and text[self.i] == '"':
                    key, self.i = _read_quoted(text, self.i)
                else:
                    start = self.i
                    while self.i < len(text) and (text[self.i].isalnum() or text[self.i] in "_-@:"):
                        self.i += 1
                    key = text[start : self.i]
                if not key:
                    raise self.fail("empty field name in selector")
                steps.append(key)
            elif ch == "[":
                end = text.find("]", self.i)
                if end < 0:
                    raise self.fail("unterminated '[' in selector")
                inner = text[self.i + 1 : end].strip()
                if inner.isdigit():
                    steps.append(int(inner))
                elif len(inner) >= 2 and inner[0] in "'\"" and inner[-1] == inner[0]:
                    steps.append(inner[1:-1])
                else:
                    raise self.fail(f"invalid index [{inner}] in selector")
                self.i = end + 1
            else:
                break
        if not steps:
            raise self.fail("a selector needs a field ($.field)")
        return tuple(steps)

    def value(self) -> Value:
        self.skip()
        text = self.text
        if self.i >= len(text):
            raise self.fail("expected a value")
        if text[self.i] == '"':
            raw, self.i = _read_quoted(text, self.i)
            return Value(raw, quoted=True)
        if text[self.i] == "%":
            end = text.find("%", self.i + 1)
            if end < 0:
                raise self.fail("unterminated %regex%")
            body = text[self.i + 1 : end]
            self.i = end + 1
            return Value(f"%{body}%", regex=_regex(body))
        start = self.i
        while self.i < len(text) and not text[self.i].isspace() and text[self.i] not in '(){}&|"':
            self.i += 1
        raw = text[start : self.i]
        if not raw:
            raise self.fail("expected a value")
        return Value(raw)

    def condition(self) -> _Node:
        path = self.selector()
        key = (
            path[-1]
            if isinstance(path[-1], str)
            else next((s for s in reversed(path) if isinstance(s, str)), "")
        )
        key_literal = frozenset({f'"{key}"'}) if _PLAIN_KEY.fullmatch(key) else frozenset()
        if self.keyword("IS"):
            if self.keyword("TRUE"):
                return _Node(lambda doc: _select(doc, path) is True, key_literal | {"true"})
            if self.keyword("FALSE"):
                return _Node(lambda doc: _select(doc, path) is False, key_literal | {"false"})
            if self.keyword("NULL"):
                return _Node(lambda doc: _select(doc, path) is None, key_literal | {"null"})
            raise self.fail("expected TRUE, FALSE or NULL after IS")
        if self.keyword("NOT"):
            if not self.keyword("EXISTS"):
                raise self.fail("expected EXISTS after NOT")
            return _Node(lambda doc: _select(doc, path) is _MISSING, frozenset())
        if self.keyword("EXISTS"):
            return _Node(lambda doc: _select(doc, path) is not _MISSING, key_literal)
        self.skip()
        op = next((o for o in self.OPERATORS if self.text.startswith(o, self.i)), None)
        if op is None:
            raise self.fail("expected a comparison (=, !=, <, <=, >, >=), IS, EXISTS or NOT EXISTS")
        self.i += len(op)
        value = self.value()
        if op not in ("=", "!=") and value.number is None:
            raise self.fail(f"'{op}' compares numbers, not {value.text!r}")
        required: frozenset[str] = frozenset()
        if op != "!=":
            required = key_literal
            if op == "=" and value.number is None:
                required |= frozenset(value.literals())

        def evaluate(doc: Any) -> bool:
            actual = _select(doc, path)
            return actual is not _MISSING and _compare(actual, op, value)

        return _Node(evaluate, required)


def _select(doc: Any, path: tuple[Step, ...]) -> Any:
    current = doc
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
            current = current[step]
        elif isinstance(current, dict) and step in current:
            current = current[step]
        else:
            return _MISSING
    return current


def _compile_json(source: str, text: str) -> FilterPattern:
    node = _JsonParser(text).parse()
    evaluate = node.evaluate

    def predicate(message: str) -> bool:
        body = message.strip()
        if not body.startswith("{"):
            return False
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(doc, dict) and evaluate(doc)

    return FilterPattern(source, "json", predicate, Prefilter(all_of=tuple(sorted(node.required))))


# -- space-delimited patterns -----------------------------------------------------------------

_DELIMITED_FIELD = re.compile(r'"[^"]*"|\[[^\]]*\]|\S+')


@dataclass(frozen=True)
class _Field:
    name: str
    op: str | None = None
    value: Value | None = None

    @property
    def ellipsis(self) -> bool:
        return self.name == "..."

    def accepts(self, token: str) -> bool:
        if self.op is None or self.value is None:
            return True
        quoted = len(token) >= 2 and token[0] == token[-1] == '"'
        if quoted or (token[:1] == "[" and token[-1:] == "]"):
            token = token[1:-1]
        return _compare(token, self.op, self.value)


def _split_fields(body: str) -> list[str]:
    parts: list[str] = []
    depth_quote = False
    start = 0
    for i, ch in enumerate(body):
        if ch == '"':
            depth_quote = not depth_quote
        elif ch == "," and not depth_quote:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts]


def _compile_delimited(source: str, text: str) -> FilterPattern:
    if not text.endswith("]"):
        raise InvalidFilterPattern(f"Invalid filter pattern: expected ']' at the end of {text!r}")
    body = text[1:-1].strip()
    fields: list[_Field] = []
    required: list[str] = []
    for part in _split_fields(body) if body else []:
        if not part:
            raise InvalidFilterPattern(f"Invalid filter pattern: empty field in {text!r}")
        if part == "...":
            fields.append(_Field("..."))
            continue
        found = re.match(r"([A-Za-z0-9_$.\-]+)\s*(!=|<=|>=|=|<|>)\s*(.+)", part)
        if found is None:
            if not re.fullmatch(r"[A-Za-z0-9_$.\-]+", part):
                raise InvalidFilterPattern(
                    f"Invalid filter pattern: bad field {part!r} in {text!r}"
                )
            fields.append(_Field(part))
            continue
        name, op, raw = found.groups()
        raw = raw.strip()
        if raw.startswith('"'):
            literal, end = _read_quoted(raw, 0)
            if raw[end:].strip():
                raise InvalidFilterPattern(f"Invalid filter pattern: bad value in {part!r}")
            value = Value(literal, quoted=True)
        elif len(raw) >= 2 and raw[0] == raw[-1] == "%":
            value = Value(raw, regex=_regex(raw[1:-1]))
        else:
            value = Value(raw)
        if op not in ("=", "!=") and value.number is None:
            raise InvalidFilterPattern(
                f"Invalid filter pattern: '{op}' compares numbers, not {raw!r}"
            )
        if op == "=" and value.number is None:
            required.extend(value.literals())
        fields.append(_Field(name, op, value))
    pattern = tuple(fields)

    def match_from(tokens: list[str], ti: int, fi: int) -> bool:
        if fi == len(pattern):
            return ti == len(tokens)
        spec = pattern[fi]
        if spec.ellipsis:
            return any(match_from(tokens, k, fi + 1) for k in range(ti, len(tokens) + 1))
        return ti < len(tokens) and spec.accepts(tokens[ti]) and match_from(tokens, ti + 1, fi + 1)

    def predicate(message: str) -> bool:
        return match_from(_DELIMITED_FIELD.findall(message), 0, 0)

    return FilterPattern(source, "delimited", predicate, Prefilter(all_of=tuple(required)))
