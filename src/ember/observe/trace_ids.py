"""Trace ids: X-Ray's `X-Amzn-Trace-Id` and W3C `traceparent`, and how they map onto each other.

Inside Ember a trace travels as an X-Ray header, `Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;
Sampled=1`; the W3C / OpenTelemetry trace id is the root without its version and dashes
(`1-5759e988-bd862e3fe1be46a994272793` ↔ `5759e988bd862e3fe1be46a994272793`), as the
OpenTelemetry X-Ray propagator maps them.

The spans of one invocation have ids derived from (request id, received time, phase): the
invoker can put the invocation span's id into the function's `_X_AMZN_TRACE_ID` before the span
exists, and the trace recorder, which builds the spans later from the InvocationReport, arrives
at the same ids without either of them keeping state.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import NamedTuple

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_ROOT = re.compile(r"^1-([0-9a-f]{8})-([0-9a-f]{24})$")
# The form Ember itself writes (and boto3 in a function sends back): parsed in one match.
_CANONICAL = re.compile(
    r"Root=1-([0-9a-f]{8})-([0-9a-f]{24})(?:;Parent=([0-9a-f]{16}))?;Sampled=([01])\Z"
)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

INVOCATION = "invocation"  # the phase names whose span ids are derived
QUEUE = "queue"
CLAIM = "claim"
INIT = "init"
HANDLER = "handler"


class TraceContext(NamedTuple):
    trace_id: str  # 32 lowercase hex (W3C); never all zeros
    parent_id: str | None  # 16 lowercase hex: the caller's span
    sampled: bool = True

    @property
    def root(self) -> str:
        """The X-Ray form of the trace id: `1-<8 hex>-<24 hex>`."""
        return xray_root(self.trace_id)

    def header(self, parent_id: str | None = None) -> str:
        """As an `X-Amzn-Trace-Id` value, with `parent_id` (or the caller's span) as Parent."""
        parent = parent_id or self.parent_id
        text = "Root=" + self.root
        if parent:
            text += ";Parent=" + parent
        return text + (";Sampled=1" if self.sampled else ";Sampled=0")

    def traceparent(self, parent_id: str | None = None) -> str:
        parent = parent_id or self.parent_id or "0" * 16
        return f"00-{self.trace_id}-{parent}-{'01' if self.sampled else '00'}"


def xray_root(trace_id: str) -> str:
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


def normalize_trace_id(text: str) -> str | None:
    """A trace id in either notation (X-Ray root, W3C 32 hex, or a whole header) → 32 hex."""
    text = text.strip().lower()
    if _HEX32.match(text) and text != "0" * 32:
        return text
    match = _ROOT.match(text)
    if match:
        return match.group(1) + match.group(2)
    for parse in (parse_xray, parse_traceparent):
        context = parse(text)
        if context is not None:
            return context.trace_id
    return None


def parse_xray(header: str | None) -> TraceContext | None:
    """`Root=1-…;Parent=…;Sampled=0|1` (other fields, e.g. Lineage, are ignored)."""
    if not header:
        return None
    match = _CANONICAL.match(header)
    if match is not None and match.group(3) != "0" * 16:  # the fast path
        trace_id = match.group(1) + match.group(2)
        if trace_id != "0" * 32:
            return TraceContext(trace_id, match.group(3), match.group(4) == "1")
    fields: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip().lower()
    match = _ROOT.match(fields.get("root", ""))
    if match is None:
        return None
    trace_id = match.group(1) + match.group(2)
    if trace_id == "0" * 32:
        return None
    parent = fields.get("parent")
    if parent is not None and (not _HEX16.match(parent) or parent == "0" * 16):
        parent = None
    return TraceContext(trace_id, parent, fields.get("sampled") != "0")


def parse_traceparent(header: str | None) -> TraceContext | None:
    """W3C `version-traceid-parentid-flags`; invalid ids (all zeros, version ff) are ignored."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None:
        return None
    version, trace_id, parent, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent == "0" * 16:
        return None
    return TraceContext(trace_id, parent, bool(int(flags, 16) & 1))


def from_headers(xray: str | None, traceparent: str | None) -> str:
    """The trace of an incoming request as an X-Ray header: the caller's `X-Amzn-Trace-Id`, else
    its W3C `traceparent`, else a new trace."""
    if xray is not None and _CANONICAL.match(xray) and parse_xray(xray) is not None:
        return xray  # already in Ember's form (the common case: boto3 in a function)
    context = parse_xray(xray) or parse_traceparent(traceparent)
    if context is None:
        return f"Root=1-{int(time.time()) & 0xFFFFFFFF:08x}-{os.urandom(12).hex()};Sampled=1"
    return context.header()


def span_id(request_id: str, received: float, phase: str) -> str:
    """The id of one phase's span of one invocation (attempt): 16 hex, never zero."""
    digest = hashlib.blake2b(
        f"{request_id}|{received!r}|{phase}".encode(), digest_size=8
    ).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def context_of(trace: str | None, request_id: str, received: float) -> TraceContext:
    """An invocation's trace: the header it came with, or (none given, e.g. an event source)
    one derived from the request id, so every invocation has a trace."""
    context = parse_xray(trace)
    if context is not None:
        return context
    seconds = int(received) & 0xFFFFFFFF
    digest = hashlib.blake2b(request_id.encode(), digest_size=12).hexdigest()
    return TraceContext(f"{seconds:08x}{digest}", None)


def function_header(trace: str | None, request_id: str, received: float) -> str:
    """`_X_AMZN_TRACE_ID` for the function: its trace, with the invocation's span as Parent, so
    the calls the function makes back to Ember join the trace beneath this invocation."""
    if trace is not None:
        match = _CANONICAL.match(trace)
        if match is not None:  # the fast path: Root= as it is, this invocation's span as Parent
            return f"{trace[:40]};Parent={span_id(request_id, received, INVOCATION)};Sampled={match.group(4)}"
    context = context_of(trace, request_id, received)
    return context.header(span_id(request_id, received, INVOCATION))
