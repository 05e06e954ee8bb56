"""Traces: ids from X-Amzn-Trace-Id / traceparent, _X_AMZN_TRACE_ID in the function, a chain
A → (sync) B → (Event) C → (destination) D as one trace, `ember trace`, and OTLP/HTTP export to
a real in-process receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asyncing import wait_for

from conftest import LiveServer, free_port
from invoking import deploy, ok

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
W3C = "5759e988bd862e3fe1be46a994272793"
CALLER_SPAN = "53995c3f42cd8ad8"

ECHO = """
import os
def handler(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")
"""

CALLER = """
import json, os, boto3
def handler(event, context):
    lam = boto3.client("lambda")
    response = lam.invoke(FunctionName=event["next"], Payload=json.dumps(event))
    return {"trace": os.environ["_X_AMZN_TRACE_ID"], "next": json.loads(response["Payload"].read())}
"""

ASYNC_CALLER = """
import json, os, boto3
def handler(event, context):
    boto3.client("lambda").invoke(FunctionName=event["then"], InvocationType="Event",
                                  Payload=json.dumps({"from": context.function_name}))
    return {"trace": os.environ["_X_AMZN_TRACE_ID"]}
"""


def with_headers(client: Any, headers: dict[str, str]) -> Any:
    def add(request: Any, **_: Any) -> None:
        for key, value in headers.items():
            request.headers[key] = value

    client.meta.events.register("before-sign.lambda.Invoke", add)
    return client


def get_trace(server: LiveServer, trace_id: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{server.endpoint}/_ember/traces/{trace_id}", timeout=10) as r:
            document: dict[str, Any] = json.load(r)
            return document
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def invocations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["function"]: s for s in document["spans"] if s["phase"] == "invocation"}


def children(document: dict[str, Any], span: dict[str, Any]) -> list[str]:
    return sorted(s["name"] for s in document["spans"] if s["parentId"] == span["spanId"])


def ember(server: LiveServer, *args: str) -> str:
    env = {**os.environ, "EMBER_ENDPOINT": server.endpoint, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "ember", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_caller_trace_reaches_the_function_and_is_stored(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, ECHO, "trace-echo")
    traced = with_headers(
        server.client("lambda"), {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={CALLER_SPAN};Sampled=1"}
    )
    seen = ok(traced, name)
    document = wait_for("the trace", lambda: get_trace(server, ROOT))
    assert document["traceId"] == W3C and document["xrayTraceId"] == ROOT
    invocation = [
        s for s in document["spans"] if s["function"] == name and s["phase"] == "invocation"
    ][-1]
    assert invocation["parentId"] == CALLER_SPAN
    # the function's _X_AMZN_TRACE_ID: the same root, this invocation's span as Parent
    assert seen == f"Root={ROOT};Parent={invocation['spanId']};Sampled=1"
    assert children(document, invocation) == ["claim", "handler"] or children(
        document, invocation
    ) == ["cold start", "handler"]
    assert get_trace(server, W3C) == get_trace(server, ROOT)  # either notation finds it


def test_w3c_traceparent_and_a_made_trace(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, ECHO, "trace-w3c")
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    traced = with_headers(server.client("lambda"), {"traceparent": f"00-{trace_id}-{parent}-01"})
    seen = ok(traced, name)
    assert seen.startswith("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=")
    document = wait_for("the trace", lambda: get_trace(server, trace_id))
    assert invocations(document)[name]["parentId"] == parent
    # no header at all: Ember makes a trace, and stores it
    made = ok(lam, name)
    root = made.split(";")[0].removeprefix("Root=")
    assert root.startswith("1-") and root != ROOT
    document = wait_for("the made trace", lambda: get_trace(server, root))
    assert invocations(document)[name]["parentId"] is None


def test_unsampled_callers_are_not_recorded(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, ECHO, "trace-unsampled")
    root = "1-5759e988-00000000000000000000beef"
    traced = with_headers(server.client("lambda"), {"X-Amzn-Trace-Id": f"Root={root};Sampled=0"})
    assert ok(traced, name).endswith(";Sampled=0")
    ok(lam, name)  # a later, sampled invocation: by then the unsampled one would have been stored
    assert get_trace(server, root) is None


def test_chain_sync_async_and_destination_is_one_trace(server: LiveServer, lam: Any) -> None:
    """A → (RequestResponse, boto3 inside A) B → (Event) C → (OnSuccess destination) D."""
    d = deploy(lam, ECHO, "chain-d")
    c = deploy(lam, ECHO, "chain-c")
    lam.put_function_event_invoke_config(
        FunctionName=c,
        DestinationConfig={
            "OnSuccess": {
                "Destination": lam.get_function(FunctionName=d)["Configuration"]["FunctionArn"]
            }
        },
    )
    b = deploy(lam, ASYNC_CALLER, "chain-b", MemorySize=256, Timeout=30)
    a = deploy(lam, CALLER, "chain-a", MemorySize=256, Timeout=30)
    root = "1-6a1b2c3d-0123456789abcdef01234567"
    traced = with_headers(
        server.client("lambda"), {"X-Amzn-Trace-Id": f"Root={root};Parent={CALLER_SPAN};Sampled=1"}
    )
    result = ok(traced, a, {"next": b, "then": c})

    def complete() -> dict[str, Any] | None:
        document = get_trace(server, root)
        return document if document and len(invocations(document)) == 4 else None

    document = wait_for("A, B, C and D in one trace", complete, timeout=60)
    spans = invocations(document)
    assert spans[a]["parentId"] == CALLER_SPAN
    assert spans[b]["parentId"] == spans[a]["spanId"]  # boto3 in A sent A's _X_AMZN_TRACE_ID
    assert spans[c]["parentId"] == spans[b]["spanId"]  # through the durable queue
    assert spans[d]["parentId"] == spans[c]["spanId"]  # the destination: beneath C's attempt
    assert result["trace"] == f"Root={root};Parent={spans[a]['spanId']};Sampled=1"
    assert result["next"]["trace"] == f"Root={root};Parent={spans[b]['spanId']};Sampled=1"
    assert spans[c]["attributes"]["ember.invocation_type"] == "Event"
    assert "queue wait" in children(document, spans[c]) and "queue wait" not in children(
        document, spans[b]
    )
    # timings nest: B runs within A's handler, C starts (queue wait) within B's invocation
    handler_a = next(
        s
        for s in document["spans"]
        if s["parentId"] == spans[a]["spanId"] and s["name"] == "handler"
    )
    assert handler_a["start"] <= spans[b]["start"] and spans[b]["end"] <= handler_a["end"] + 0.002
    assert spans[b]["start"] <= spans[c]["start"] <= spans[b]["end"] + 0.002

    tree = ember(server, "trace", root)
    lines = tree.splitlines()
    assert root in lines[0] and "4 invocations" in lines[0]
    order = [
        next(i for i, line in enumerate(lines) if f" {name} " in line) for name in (a, b, c, d)
    ]
    assert order == sorted(order), tree
    indent = {name: lines[i].index(name) for name, i in zip((a, b, c, d), order, strict=True)}
    assert indent[a] < indent[b] < indent[c] < indent[d], tree
    assert "handler" in tree and "queue wait" in tree and " ms" in tree

    last = ember(server, "trace", "--function", c, "--last")
    assert root in last.splitlines()[0]
    listing = ember(server, "trace", "--function", a, "--json")
    found = json.loads(listing)
    assert found[0]["xrayTraceId"] == root and found[0]["functions"] == [a, b, c, d]


# -- OTLP/HTTP export to a real receiver ---------------------------------------------------


class Receiver:
    """A tiny OTLP/HTTP receiver: records the ExportTraceServiceRequest bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if (
                    self.path == "/v1/traces"
                    and self.headers["Content-Type"] == "application/x-protobuf"
                ):
                    received.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def spans(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    found.extend(scope_spans.spans)
        return found


@pytest.fixture(scope="module")
def otlp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Receiver]]:
    receiver = Receiver()
    live = LiveServer(
        Path(tmp_path_factory.mktemp("ember-otlp")) / "data",
        free_port(),
        extra_env={
            "EMBER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    )
    live.start()
    yield live, receiver
    live.stop()
    receiver.http.shutdown()


def test_spans_are_exported_over_otlp_http(otlp_server: tuple[LiveServer, Receiver]) -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    server, receiver = otlp_server
    lam = server.client("lambda")
    name = deploy(lam, ECHO, "trace-otlp")
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced = with_headers(server.client("lambda"), {"traceparent": f"00-{trace_id}-{parent}-01"})
    seen = ok(traced, name)

    def exported() -> list[Any] | None:
        spans = [s for s in receiver.spans() if s.trace_id.hex() == trace_id]
        return spans if len(spans) >= 4 else None

    spans = {s.name: s for s in wait_for("the exported spans", exported)}
    assert set(spans) == {name, "cold start", "init", "handler"}
    invocation = spans[name]
    assert invocation.parent_span_id.hex() == parent and invocation.kind == Span.SPAN_KIND_SERVER
    assert (
        seen
        == f"Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent={invocation.span_id.hex()};Sampled=1"
    )
    assert spans["handler"].parent_span_id == invocation.span_id
    assert spans["init"].parent_span_id == spans["cold start"].span_id
    assert invocation.start_time_unix_nano <= spans["handler"].start_time_unix_nano
    assert spans["handler"].end_time_unix_nano == invocation.end_time_unix_nano
    attributes = {a.key: a.value for a in invocation.attributes}
    assert attributes["faas.name"].string_value == name and attributes["faas.coldstart"].bool_value
    # and the same spans are in the local store
    document = wait_for("the local trace", lambda: get_trace(server, trace_id))
    assert invocations(document)[name]["spanId"] == invocation.span_id.hex()


SDK_PROBE = """
import sys, boto3, botocore
def handler(event, context):
    return {"boto3": boto3.__file__, "botocore": botocore.__version__, "last": sys.path[-1],
            "self": boto3.client("lambda").get_function(FunctionName=context.function_name)["Configuration"]["FunctionName"]}
"""


@pytest.mark.parametrize("runtime", ["python3.10", "python3.13"])
def test_functions_get_the_platforms_boto3_read_only(lam: Any, runtime: str) -> None:
    import botocore

    name = deploy(lam, SDK_PROBE, "sdk", runtime=runtime, MemorySize=256, Timeout=30)
    seen = ok(lam, name)
    assert (
        seen["boto3"] == "/var/runtime/sdk/boto3/__init__.py" and seen["last"] == "/var/runtime/sdk"
    )
    assert seen["botocore"] == botocore.__version__
    assert seen["self"] == name  # through AWS_ENDPOINT_URL, back to Ember


def test_a_functions_own_boto3_wins(lam: Any) -> None:
    code = {
        "app.py": "import boto3\ndef handler(event, context):\n    return boto3.__file__\n",
        "boto3/__init__.py": "__version__ = 'bundled'\n",
    }
    assert ok(lam, deploy(lam, code, "sdk-own")) == "/var/task/boto3/__init__.py"
