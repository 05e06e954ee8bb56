"""A model-driven fuzz of every operation Ember serves, and of raw malformed HTTP.

Shared by tests/integration/test_fuzz_operations.py (bounded: ~2,000 requests) and bench/fuzz.py
(long runs). Everything is real: requests go over TCP to a running `ember server`, either
through boto3 with client-side validation off — every operation of the `lambda`, `logs` and
`cloudwatch` models, members mutated into wrong types, out-of-range numbers, hostile strings,
foreign ARNs, missing required members — or as raw bytes on a socket: broken JSON, huge numbers,
deep nesting, invalid UTF-8, bad percent escapes, duplicate and oversized headers, bad
`X-Amz-Target`s, broken auth headers, the query protocol, and Ember's own routes.

A request passes when its answer is not a 5xx, or is an honest `501 NotImplementedException`.
A run is seeded: the same seed sends the same requests (the server's state aside).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import random
import re
import socket
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from botocore import xform_name
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

ACCOUNT = "000000000000"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/fuzz-role"
FUNCTION = "fuzz-fn"
ALIAS = "live"
LAYER = "fuzz-layer"
LOG_GROUP = "/fuzz/group"
LOG_STREAM = "fuzz-stream"
SERVICES = ("lambda", "logs", "cloudwatch")
RACES = {"ResourceConflictException", "ResourceAlreadyExistsException", "ResourceNotFoundException"}
HANDLER_SOURCE = "def handler(event, context):\n    return event\n"


def seed_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", HANDLER_SOURCE)
    return buf.getvalue()


SEED_ZIP = seed_zip()


# ---------------------------------------------------------------------------------- results


@dataclass
class Finding:
    """One request that got a 5xx (not an honest 501), no answer, or an unparseable one."""

    source: str  # "model" or "raw"
    service: str
    operation: str
    status: int | None
    error: str
    request: str

    def key(self) -> tuple[str, str, str, int | None]:
        return (self.service, self.operation, self.error[:60], self.status)

    def __str__(self) -> str:
        return (
            f"[{self.source}] {self.service}.{self.operation} -> {self.status} {self.error}\n"
            f"    {self.request[:600]}"
        )


@dataclass
class Tally:
    sent: int = 0
    unsendable: int = 0  # botocore itself could not serialize the mutated parameters
    honest_501: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # answered 2xx, per operation
    findings: list[Finding] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.sent += other.sent
        self.unsendable += other.unsendable
        self.honest_501 += other.honest_501
        self.statuses.update(other.statuses)
        self.operations.update(other.operations)
        self.accepted.update(other.accepted)
        self.findings.extend(other.findings)

    def distinct(self) -> list[Finding]:
        seen: dict[tuple[str, str, str, int | None], Finding] = {}
        for finding in self.findings:
            seen.setdefault(finding.key(), finding)
        return list(seen.values())

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.sent} requests sent ({self.unsendable} not serializable by botocore), "
            f"{len(self.operations)} operations, statuses {{{statuses}}}, "
            f"{self.honest_501} honest 501s, {len(self.findings)} findings "
            f"({len(self.distinct())} distinct)"
        )


def judge(status: int | None, code: str) -> str | None:
    """Why an answer is a failure (None: it is not)."""
    if status is None:
        return "no answer"
    if status == 501 and code == "NotImplementedException":
        return None
    if status >= 500:
        return f"server error {code or '(no code)'}"
    return None


# ---------------------------------------------------------------------------------- seeds


class Seeds:
    """Real resources for the mutated requests to hit, so they reach past the 404s."""

    def __init__(self, endpoint: str, runtime: str) -> None:
        self.endpoint = endpoint
        self.runtime = runtime
        self.lam = client(endpoint, "lambda", validate=True)
        self.logs = client(endpoint, "logs", validate=True)
        self.layer_version = 1

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"

    @property
    def layer_version_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:{self.layer_version}"

    def ensure(self) -> None:
        """Create whatever of the seeds is missing (a mutated request may have deleted it).
        Fuzzers running side by side share the seeds: one racing another is no failure."""
        for _ in range(3):
            try:
                self._ensure()
                return
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in RACES:
                    raise

    def _ensure(self) -> None:
        lam = self.lam
        try:
            lam.get_function(FunctionName=FUNCTION)
        except lam.exceptions.ResourceNotFoundException:
            lam.create_function(
                FunctionName=FUNCTION,
                Runtime=self.runtime,
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": SEED_ZIP},
                Timeout=5,
            )
        lam.delete_function_concurrency(FunctionName=FUNCTION)
        if not lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"][1:]:
            lam.publish_version(FunctionName=FUNCTION)
        try:
            lam.get_alias(FunctionName=FUNCTION, Name=ALIAS)
        except lam.exceptions.ResourceNotFoundException:
            version = lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"][-1][
                "Version"
            ]
            lam.create_alias(FunctionName=FUNCTION, Name=ALIAS, FunctionVersion=version)
        try:
            lam.get_layer_version(LayerName=LAYER, VersionNumber=self.layer_version)
        except lam.exceptions.ResourceNotFoundException:
            published = lam.publish_layer_version(LayerName=LAYER, Content={"ZipFile": SEED_ZIP})
            self.layer_version = published["Version"]
        if not self._has_policy():
            lam.add_permission(
                FunctionName=FUNCTION,
                StatementId="fuzz-sid",
                Action="lambda:InvokeFunction",
                Principal="*",
            )
        try:
            lam.get_layer_version_policy(LayerName=LAYER, VersionNumber=self.layer_version)
        except lam.exceptions.ResourceNotFoundException:
            lam.add_layer_version_permission(
                LayerName=LAYER,
                VersionNumber=self.layer_version,
                StatementId="fuzz-sid",
                Action="lambda:GetLayerVersion",
                Principal="*",
            )
        logs = self.logs
        if not logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]:
            logs.create_log_group(logGroupName=LOG_GROUP)
        streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=LOG_STREAM)
        if not streams["logStreams"]:
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=LOG_STREAM)
            logs.put_log_events(
                logGroupName=LOG_GROUP,
                logStreamName=LOG_STREAM,
                logEvents=[{"timestamp": int(time.time() * 1000), "message": "ERROR fuzz seed"}],
            )

    def _has_policy(self) -> bool:
        try:
            self.lam.get_policy(FunctionName=FUNCTION)
        except self.lam.exceptions.ResourceNotFoundException:
            return False
        return True


def client(endpoint: str, service: str, validate: bool = False) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="fuzz",
        aws_secret_access_key="fuzz",
        config=botocore.config.Config(
            parameter_validation=validate,
            retries={"max_attempts": 0},
            connect_timeout=5,
            read_timeout=60,
            inject_host_prefix=False,
        ),
    )


# ---------------------------------------------------------------------------------- values


def _foreign_arns() -> list[str]:
    """ARNs that name the seeds in another partition, region or account, or malformed."""
    fn = FUNCTION
    return [
        f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:function:{fn}",
        f"arn:aws-us-gov:lambda:{REGION}:{ACCOUNT}:function:{fn}",
        f"arn:awsx:lambda:{REGION}:{ACCOUNT}:function:{fn}",
        f"arn::lambda:{REGION}:{ACCOUNT}:function:{fn}",
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:{fn}",
        f"arn:aws:lambda:{REGION}:123456789012:function:{fn}",
        f"123456789012:function:{fn}",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}:{ALIAS}:extra",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}:99999999999999999999",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}:9223372036854775808",
        f"{fn}:18446744073709551616",
        f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:1",
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:{LAYER}:1",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:9223372036854775808",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:99999999999999999999999",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:-1",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:0",
        f"arn:aws-cn:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{LOG_GROUP}:*",
        "arn:aws:sqs:us-east-1:000000000000:q",
        "arn:",
        "arn:aws:lambda:::function:",
    ]


# Optional members without which a request does little (no code, no runtime, no payload).
USEFUL = frozenset(
    {"Runtime", "Handler", "ZipFile", "Payload", "Code", "Content", "logGroupName", "Statistics"}
)

HOSTILE_STRINGS: list[Any] = [
    "",
    " ",
    "\x00",
    "\t\n\r",
    "é",
    "💥" * 3,
    "\u202e\ufeff",
    "a" * 65,
    "b" * 141,
    "c" * 257,
    "d" * 5000,
    "e" * 70_000,
    "../../etc/passwd",
    "..",
    "/",
    "%",
    "%zz",
    "%00%ff",
    "a/b",
    "a:b",
    "a:b:c",
    "$LATEST",
    "$LATEST.PUBLISHED",
    "ALL",
    "*",
    "9" * 30,
    "-1",
    "0",
    "1e999",
    "NaN",
    "null",
    "{}",
    "[]",
    "' OR 1=1 --",
    "\\",
    '"',
    "<x/>",
    "${jndi:x}",
    "__proto__",
    "\u00b2",
    "\u0661\u0662",
    "9" * 5000,
    2**63,
    -1,
    0,
    1.5,
    True,
    [],
    {"a": 1},
    None,
]

HOSTILE_INTS: list[Any] = [
    2**31,
    2**31 - 1,
    -(2**31) - 1,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    10**30,
    -(10**30),
    -1,
    0,
    1.5,
    -0.0,
    1e308,
    "12",
    "x",
    "",
    True,
    None,
    [],
    {},
]

HOSTILE_DOUBLES: list[Any] = [
    1e308,
    -1e308,
    5e-324,
    0.0,
    -0.0,
    2**64,
    10**30,
    float("inf"),
    float("nan"),
    -1.0,
    1.0000001,
    "0.5",
    True,
    None,
    [],
]


class Values:
    """Plausible and hostile values for botocore shapes, named by member where it matters."""

    def __init__(self, rng: random.Random, seeds: Seeds) -> None:
        self.rng = rng
        self.seeds = seeds
        self.foreign = _foreign_arns()
        self.optional = 0.3  # the share of optional members a plausible structure carries
        self.operation = ""  # the operation being built

    # -- plausible ------------------------------------------------------------------------

    def plausible(self, shape: Shape, name: str, depth: int = 0) -> Any:
        named = self._named(name, shape)
        if named is not None:
            return named
        kind = shape.type_name
        rng = self.rng
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            return self.structure(shape, depth)
        if kind == "list":
            assert isinstance(shape, ListShape)
            count = rng.randint(
                max(0, shape.metadata.get("min", 0)), min(3, shape.metadata.get("max", 3))
            )
            return [self.plausible(shape.member, name, depth + 1) for _ in range(count)]
        if kind == "map":
            assert isinstance(shape, MapShape)
            return {
                self.plausible(shape.key, "key", depth + 1): self.plausible(
                    shape.value, "value", depth + 1
                )
                for _ in range(rng.randint(0, 2))
            }
        if kind == "string":
            if shape.enum:
                return rng.choice(shape.enum)
            low = shape.metadata.get("min", 1)
            high = min(shape.metadata.get("max", 12), max(low, 12))
            return "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_")
                for _ in range(rng.randint(low, high))
            )
        if kind in ("integer", "long"):
            low = shape.metadata.get("min", 0)
            return rng.randint(int(low), int(min(shape.metadata.get("max", low + 3), low + 3)))
        if kind in ("double", "float"):
            low = float(shape.metadata.get("min", 0))
            return low + rng.random() * (float(shape.metadata.get("max", low + 1)) - low)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "blob":
            return rng.choice([SEED_ZIP, b'{"k": 1}', b""])
        if kind == "timestamp":
            return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=rng.randint(0, 120))
        return None

    def structure(self, shape: StructureShape, depth: int) -> dict[str, Any]:
        """Required members, the ones that make a request work, and some others at random
        (`self.optional` of them)."""
        out: dict[str, Any] = {}
        required = set(shape.required_members)
        for member, member_shape in shape.members.items():
            wanted = member in required or member in USEFUL
            if wanted or (depth < 4 and self.rng.random() < self.optional):
                value = self.plausible(member_shape, member, depth + 1)
                if value is not None:
                    out[member] = value
        return out

    def _named(self, name: str, shape: Shape) -> Any:
        """Seed-aware values for members whose names say what they are."""
        rng = self.rng
        seeds = self.seeds
        if shape.type_name == "timestamp":
            now = dt.datetime.now(dt.UTC)
            return now if name == "EndTime" else now - dt.timedelta(minutes=rng.randint(1, 180))
        if shape.type_name not in ("string", "integer", "long", "blob", "list"):
            return None
        if name in ("startTime", "endTime") and shape.type_name == "long":
            now_ms = int(time.time() * 1000)
            return now_ms if name == "endTime" else now_ms - rng.randint(0, 3_600_000)
        fresh = {
            "CreateFunction": "FunctionName",
            "CreateLogGroup": "logGroupName",
            "CreateAlias": "Name",
            "CreateLogStream": "logStreamName",
            "AddPermission": "StatementId",
            "AddLayerVersionPermission": "StatementId",
        }
        if fresh.get(self.operation) == name and rng.random() < 0.7:  # not taken yet: 409 otherwise
            return ("/fuzz/" if name == "logGroupName" else "fuzz-") + uuid.uuid4().hex[:8]
        if shape.type_name == "list":
            if name == "Layers":
                return [seeds.layer_version_arn]
            if name in ("logStreamNames",):
                return [LOG_STREAM]
            if name == "Statistics":
                return rng.choice([["Sum"], ["Average", "Maximum"]])
            return None
        choices: dict[str, list[Any]] = {
            "FunctionName": [
                FUNCTION,
                FUNCTION,
                f"{FUNCTION}:{ALIAS}",
                seeds.function_arn,
                f"{ACCOUNT}:function:{FUNCTION}",
                f"fuzz-{uuid.uuid4().hex[:8]}",
            ],
            "Qualifier": ["$LATEST", "1", ALIAS, "missing"],
            "FunctionVersion": ["1", "$LATEST", "ALL"],
            "Name": [ALIAS, "other", "1"],
            "LayerName": [LAYER, LAYER, f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}"],
            "VersionNumber": [seeds.layer_version, 1, 2],
            "Arn": [seeds.layer_version_arn],
            "Resource": [seeds.function_arn],
            "Role": [ROLE],
            "Runtime": [seeds.runtime, seeds.runtime, "python3.12", "nodejs20.x"],
            "Handler": ["app.handler"],
            "ZipFile": [SEED_ZIP, SEED_ZIP, b"not a zip"],
            "Payload": [b'{"k": 1}', b"", b"[1, 2]"],
            "Action": (
                ["lambda:GetLayerVersion"]
                if "Layer" in self.operation
                else ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl", "lambda:*"]
            ),
            "Principal": ["*", ACCOUNT, "s3.amazonaws.com"],
            "StatementId": ["fuzz-sid", f"sid-{rng.randint(0, 999)}"],
            "logGroupName": [LOG_GROUP, LOG_GROUP, f"/fuzz/{uuid.uuid4().hex[:8]}"],
            "logGroupIdentifier": [
                LOG_GROUP,
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}",
            ],
            "logGroupNamePrefix": ["/fuzz", "/aws/lambda/"],
            "logStreamName": [LOG_STREAM, LOG_STREAM, f"s-{rng.randint(0, 9)}"],
            "logStreamNamePrefix": ["fuzz", ""],
            "filterPattern": [
                "",
                "ERROR",
                "{ $.a = 1 }",
                "[a, b, c]",
                '"fuzz seed"',
                "?ERROR ?WARN",
            ],
            "Namespace": ["AWS/Lambda"],
            "MetricName": ["Invocations", "Errors", "Duration"],
            "Period": [60, 300],
            "Stat": ["Sum", "Average"],
            "Statistics": [["Sum"], ["Average", "Maximum"]],
            "Id": ["q1"],
        }
        options = choices.get(name)
        if options is None:
            return None
        return rng.choice(options)

    # -- hostile --------------------------------------------------------------------------

    def hostile(self, shape: Shape) -> Any:
        rng = self.rng
        kind = shape.type_name
        if kind == "string":
            if rng.random() < 0.25:
                return rng.choice(self.foreign)
            if shape.enum and rng.random() < 0.2:
                return rng.choice(shape.enum).lower() + "x"
            high = shape.metadata.get("max")
            if high is not None and rng.random() < 0.15:
                return "x" * (int(high) + 1)
            return rng.choice(HOSTILE_STRINGS)
        if kind in ("integer", "long"):
            bounds = [
                shape.metadata[k] + d for k, d in (("min", -1), ("max", 1)) if k in shape.metadata
            ]
            return rng.choice(HOSTILE_INTS + bounds)
        if kind in ("double", "float"):
            return rng.choice(HOSTILE_DOUBLES)
        if kind == "boolean":
            return rng.choice(["true", 1, 0, None, "yes", [], 2**64])
        if kind == "blob":
            return rng.choice(
                [
                    b"",
                    bytes(rng.getrandbits(8) for _ in range(64)),
                    b"PK\x03\x04broken",
                    b"PK\x05\x06" + b"\x00" * 18,
                    "not base64!",
                    12,
                    b"\xff" * 2000,
                ]
            )
        if kind == "timestamp":
            return rng.choice([0, -1, 2**40, 253402300800, 10**20, -(10**12), 1e308])
        if kind == "list":
            assert isinstance(shape, ListShape)
            count = rng.choice([0, 1, int(shape.metadata.get("max", 50)) + 1, 200])
            return rng.choice(
                [
                    [self.hostile(shape.member) for _ in range(min(count, 300))],
                    [self.plausible(shape.member, "item") for _ in range(min(count, 300))],
                    "not a list",
                    {"a": 1},
                    [None],
                    [[[]]],
                ]
            )
        if kind == "map":
            assert isinstance(shape, MapShape)
            many = int(shape.metadata.get("max", 60)) + 1
            return rng.choice(
                [
                    {},
                    {"": "v"},
                    {"k": None},
                    {"aws:reserved": "v"},
                    {"k" * 200: "v" * 300},
                    {f"k{i}": "v" for i in range(many)},
                    {"k": {"nested": [1]}},
                    "not a map",
                    [1, 2],
                    {str(self.hostile(shape.key)): self.hostile(shape.value)},
                ]
            )
        if kind == "structure":
            return rng.choice(
                [{}, "not a structure", [], 0, {"Unknown": 1}, None, {"a": {"b": {"c": {}}}}]
            )
        return None

    def mutate(self, params: dict[str, Any], shape: StructureShape) -> None:
        """Replace, drop or add one member somewhere in `params` with a hostile value."""
        target: Any = params
        current: Shape = shape
        for _ in range(4):
            if (
                not isinstance(current, StructureShape)
                or not current.members
                or not isinstance(target, dict)
            ):
                return
            name = self.rng.choice(list(current.members))
            member = current.members[name]
            child = target.get(name)
            if (
                isinstance(member, StructureShape)
                and isinstance(child, dict)
                and self.rng.random() < 0.5
            ):
                target, current = child, member
                continue
            if (
                isinstance(member, ListShape)
                and isinstance(child, list)
                and child
                and self.rng.random() < 0.4
            ):
                index = self.rng.randrange(len(child))
                if isinstance(member.member, StructureShape) and isinstance(child[index], dict):
                    target, current = child[index], member.member
                    continue
                child[index] = self.hostile(member.member)
                return
            if name in target and self.rng.random() < 0.3:
                del target[name]  # a required member missing, or an optional one absent
            else:
                target[name] = self.hostile(member)
            return


# ---------------------------------------------------------------------------------- model fuzz


def implemented_operations() -> dict[str, set[str]]:
    """The operations Ember serves for real, per botocore service name."""
    from ember.api import app  # noqa: F401 - registers every Lambda operation module
    from ember.api.lambda_api import HANDLERS as LAMBDA
    from ember.api.logs_api import HANDLERS as LOGS

    return {
        "lambda": set(LAMBDA),
        "logs": set(LOGS),
        "cloudwatch": {"GetMetricStatistics", "GetMetricData", "ListMetrics"},
    }


@dataclass
class Sent:
    request: str = ""
    sent: bool = False


class ModelFuzzer:
    """Mutated requests for every operation of every served model, through boto3."""

    def __init__(self, endpoint: str, seed: int, runtime: str) -> None:
        self.rng = random.Random(seed)
        self.seeds = Seeds(endpoint, runtime)
        self.values = Values(self.rng, self.seeds)
        self.clients = {service: client(endpoint, service) for service in SERVICES}
        self.last = Sent()
        for service_client in self.clients.values():
            service_client.meta.events.register("before-send", self._note)
        implemented = implemented_operations()
        self.operations: list[tuple[str, str]] = []
        self.weights: list[float] = []
        for service, service_client in self.clients.items():
            for name in service_client.meta.service_model.operation_names:
                self.operations.append((service, name))
                self.weights.append(6.0 if name in implemented[service] else 1.0)

    def _note(self, request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        self.last = Sent(f"{request.method} {request.url} {body[:300]!r}", True)

    def run(self, budget: int, deadline: float | None = None) -> Tally:
        tally = Tally()
        self.seeds.ensure()
        # Every operation once, unmutated; then by weight (implemented ones six times as often).
        first = list(self.operations)
        self.rng.shuffle(first)
        rest = self.rng.choices(self.operations, self.weights, k=max(0, budget - len(first)))
        for index, (service, operation) in enumerate((first + rest)[:budget]):
            if deadline is not None and time.monotonic() > deadline:
                break
            self.one(service, operation, tally, plain=True if index < len(first) else None)
        return tally

    def one(self, service: str, operation: str, tally: Tally, plain: bool | None = None) -> None:
        service_client = self.clients[service]
        model: OperationModel = service_client.meta.service_model.operation_model(operation)
        params: dict[str, Any] = {}
        if model.input_shape is not None:
            # Half the requests are plain (only what they need) with at most one mutation: they
            # get past validation and reach the handlers; the others carry more of everything.
            unmutated = plain is True
            plain = self.rng.random() < 0.5 if plain is None else plain
            self.values.optional = 0.0 if plain else 0.3
            self.values.operation = operation
            params = self.values.structure(model.input_shape, 0)
            for _ in range(
                0 if unmutated else self.rng.choice([0, 1] if plain else [0, 1, 1, 2, 3])
            ):
                self.values.mutate(params, model.input_shape)
        self.last = Sent()
        status: int | None
        code = ""
        try:
            response = getattr(service_client, xform_name(operation))(**params)
            status = response["ResponseMetadata"]["HTTPStatusCode"]
            stream = response.get("Payload") or response.get("EventStream")
            if hasattr(stream, "read"):
                stream.read()
        except botocore.exceptions.ClientError as error:
            status = error.response["ResponseMetadata"].get("HTTPStatusCode")
            code = error.response.get("Error", {}).get("Code", "")
        except Exception as error:  # sorted below: unsendable, or a finding
            if not self.last.sent or "Invalid header" in str(error):  # refused by urllib3
                tally.unsendable += 1
                return
            status = None
            code = f"{type(error).__name__}: {error}"
        tally.sent += 1
        tally.operations[f"{service}.{operation}"] += 1
        if status is not None:
            tally.statuses[status] += 1
            if status < 300:
                tally.accepted[f"{service}.{operation}"] += 1
        if status == 501:
            tally.honest_501 += code == "NotImplementedException"
        problem = judge(status, code) if status is not None else f"no parseable answer: {code}"
        if problem:
            tally.findings.append(
                Finding("model", service, operation, status, problem, self.last.request)
            )
        if (
            operation.startswith(("Delete", "Remove", "Put", "Update"))
            and status is not None
            and status < 300
        ):
            self.seeds.ensure()


# ---------------------------------------------------------------------------------- raw HTTP


@dataclass
class RawCase:
    label: str
    data: bytes
    may_close: bool = False  # broken HTTP: the server may hang up without an answer


@dataclass
class RawAnswer:
    status: int | None
    headers: dict[str, str]
    body: bytes


def send_raw(host: str, port: int, data: bytes, timeout: float = 15.0) -> RawAnswer:
    """Send bytes, read until the server closes (every case asks it to) or the timeout."""
    chunks: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        # It may answer (and close) before reading everything: then read the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise TimeoutError(f"no answer within {timeout}s") from None
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    while re.match(rb"HTTP/1\.[01] 1\d\d ", raw):  # 100 Continue: the answer follows
        raw = raw.partition(b"\r\n\r\n")[2]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    found = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0]) if lines and lines[0] else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return RawAnswer(int(found.group(1)) if found else None, headers, body)


def http(
    method: str,
    target: str | bytes,
    headers: list[tuple[str, str | bytes]] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
    length: bool = True,
) -> bytes:
    """A request as bytes, with `Connection: close` so that the answer ends at the close."""
    target_bytes = (
        target if isinstance(target, bytes) else target.encode("utf-8", "surrogateescape")
    )
    lines = [method.encode() + b" " + target_bytes + b" HTTP/1.1", b"Host: " + host.encode()]
    for name, value in headers or []:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


LAMBDA_AUTH = (
    "Authorization",
    f"AWS4-HMAC-SHA256 Credential=fuzz/20240101/{REGION}/lambda/aws4_request, "
    "SignedHeaders=host, Signature=00",
)

HOSTILE_BODIES: list[bytes] = [
    b"{",
    b"}",
    b"[]",
    b"null",
    b"1",
    b'"x"',
    b"true",
    b"{}{}",
    b'{"a":1}garbage',
    b"\xef\xbb\xbf{}",
    b'{"FunctionName": "\xff\xfe"}',
    b'{"a": "\\ud800"}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1e999}',
    b'{"a": -1e999}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"a": ' + b"9" * 5000 + b"}",
    b"\x00" * 64,
    "{}".encode("utf-16"),
    b'{"a":1,"a":2}',
    b"\x1f\x8b\x08\x00garbage",
    b" " * 1000,
    b"\r\n",
    b"{" + b'"k":1,' * 20000 + b'"k":1}',
]

NUMBERS = [
    b"9223372036854775808",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"-9223372036854775809",
    b"1e400",
    b"1.5",
    b"-0",
    b"1E2",
    b"0x10",
    b"2147483648",
    b"-2147483649",
]


class RawFuzzer:
    """Malformed HTTP for every served route, the JSON and query protocols and Ember's own."""

    def __init__(self, endpoint: str, seed: int) -> None:
        self.rng = random.Random(seed ^ 0x5EED)
        host, _, port = endpoint.rpartition("//")[2].partition(":")
        self.host, self.port = host, int(port)
        self.lambda_model = (
            boto3.session.Session()
            .client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
            .meta.service_model
        )
        self.families: list[Callable[[], RawCase]] = [
            self.lambda_body,
            self.lambda_body,
            self.lambda_body,
            self.lambda_numbers,
            self.lambda_numbers,
            self.lambda_path,
            self.lambda_path,
            self.lambda_query,
            self.lambda_headers,
            self.json_service,
            self.json_service,
            self.json_service,
            self.query_protocol,
            self.auth,
            self.http_level,
            self.http_level,
            self.own_routes,
            self.own_routes,
        ]

    def cases(self, count: int) -> Iterator[RawCase]:
        for _ in range(count):
            yield self.rng.choice(self.families)()

    def run(self, budget: int, deadline: float | None = None) -> Tally:
        tally = Tally()
        for case in self.cases(budget):
            if deadline is not None and time.monotonic() > deadline:
                break
            self.one(case, tally)
        return tally

    def one(self, case: RawCase, tally: Tally) -> None:
        tally.sent += 1
        tally.operations[f"raw.{case.label.split(' ')[0]}"] += 1
        try:
            answer = send_raw(self.host, self.port, case.data)
        except (TimeoutError, OSError) as error:
            tally.findings.append(
                Finding(
                    "raw",
                    "http",
                    case.label,
                    None,
                    f"{type(error).__name__}: {error}",
                    repr(case.data[:600]),
                )
            )
            return
        if answer.status is not None:
            tally.statuses[answer.status] += 1
        code = (
            answer.headers.get("x-amzn-errortype", "")
            or answer.headers.get("x-amzn-query-error", "").partition(";")[0]
        )
        if answer.status == 501:
            tally.honest_501 += code == "NotImplementedException"
        if answer.status is None and case.may_close:
            return
        problem = judge(answer.status, code)
        if problem:
            tally.findings.append(
                Finding(
                    "raw",
                    "http",
                    case.label,
                    answer.status,
                    f"{problem}: {answer.body[:200]!r}",
                    repr(case.data[:600]),
                )
            )

    # -- Lambda (rest-json) ----------------------------------------------------------------

    def _route(self) -> tuple[str, str, OperationModel]:
        name = self.rng.choice(self.lambda_model.operation_names)
        operation = self.lambda_model.operation_model(name)
        return operation.http["method"], operation.http["requestUri"], operation

    def _label_value(self, label: str) -> str:
        seeded = {
            "FunctionName": FUNCTION,
            "Name": ALIAS,
            "LayerName": LAYER,
            "VersionNumber": "1",
            "Qualifier": ALIAS,
            "StatementId": "fuzz-sid",
            "ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}",
        }
        return seeded.get(label.rstrip("+"), "x")

    def _path(self, uri: str, hostile: bool = False) -> str:
        path, _, query = uri.partition("?")
        labels = re.findall(r"\{([^}]+)\}", path)
        victim = self.rng.choice(labels) if labels and hostile else None
        for label in labels:
            value = self._label_value(label)
            if label == victim:
                value = self.rng.choice(
                    [
                        "%",
                        "%zz",
                        "%g1",
                        "%ff%fe",
                        "%00",
                        "%2F",
                        "%2e%2e",
                        "..",
                        "%C0%AF",
                        "a" * 10_000,
                        "%E2%82",
                        "%uD800",
                        "9" * 40,
                        "9223372036854775808",
                        "-1",
                        "%20",
                        "+",
                        "$LATEST",
                        f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}",
                        "%F0%9F%92%A5",
                        ";x=1",
                        f"arn%3Aaws%3Alambda%3Aeu-west-1%3A{ACCOUNT}%3Afunction%3A{FUNCTION}",
                        "",
                        "9" * 5000,
                        "-" + "9" * 30,
                        "%C2%B2",
                        "%D9%A1",
                        f"{FUNCTION}:%C2%B2",
                    ]
                )
            path = path.replace("{" + label + "}", value)
        return path + ("?" + query if query else "")

    def lambda_body(self) -> RawCase:
        method, uri, operation = self._route()
        body = self.rng.choice(HOSTILE_BODIES)
        content_type = self.rng.choice(
            [
                "application/json",
                "application/x-amz-json-1.1",
                "text/plain",
                "application/json; charset=utf-16",
                "",
            ]
        )
        headers: list[tuple[str, str | bytes]] = [LAMBDA_AUTH]
        if content_type:
            headers.append(("Content-Type", content_type))
        return RawCase(
            f"lambda-body {operation.name}", http(method, self._path(uri), headers, body)
        )

    def lambda_numbers(self) -> RawCase:
        """A JSON body whose every number member is one out-of-range or odd number literal."""
        method, uri, operation = self._route()
        numbers: list[str] = []
        shape = operation.input_shape
        fields: list[bytes] = []
        if shape is not None:
            for name, member in shape.members.items():
                if member.serialization.get("location"):
                    continue
                if member.type_name in ("integer", "long", "double"):
                    numbers.append(name)
                    fields.append(b'"' + name.encode() + b'": ' + self.rng.choice(NUMBERS))
                elif isinstance(member, StructureShape):
                    inner = [
                        n
                        for n, m in member.members.items()
                        if m.type_name in ("integer", "long", "double")
                    ]
                    if inner:
                        fields.append(
                            b'"'
                            + name.encode()
                            + b'": {"'
                            + self.rng.choice(inner).encode()
                            + b'": '
                            + self.rng.choice(NUMBERS)
                            + b"}"
                        )
        for name in shape.required_members if shape is not None else []:
            if (
                name not in numbers
                and shape is not None
                and not shape.members[name].serialization.get("location")
            ):
                fields.append(
                    b'"'
                    + name.encode()
                    + b'": '
                    + json.dumps(self._json_default(shape.members[name], name)).encode()
                )
        body = b"{" + b", ".join(fields) + b"}"
        return RawCase(
            f"lambda-numbers {operation.name}", http(method, self._path(uri), [LAMBDA_AUTH], body)
        )

    def _json_default(self, shape: Shape, name: str) -> Any:
        if name == "Code":
            return {"ZipFile": base64.b64encode(SEED_ZIP).decode()}
        if name in ("Role",):
            return ROLE
        if shape.type_name == "structure":
            return {}
        if shape.type_name == "list":
            return []
        if shape.type_name == "map":
            return {}
        if shape.type_name in ("integer", "long"):
            return 1
        if shape.type_name == "boolean":
            return False
        return {"FunctionName": FUNCTION, "Runtime": "python3.12", "Handler": "app.handler"}.get(
            name, "x"
        )

    def lambda_path(self) -> RawCase:
        method, uri, operation = self._route()
        path = self._path(uri, hostile=True)
        if self.rng.random() < 0.2:
            method = self.rng.choice(
                ["PATCH", "OPTIONS", "HEAD", "TRACE", "GET", "DELETE", "PUT", "POST"]
            )
        return RawCase(f"lambda-path {operation.name}", http(method, path, [LAMBDA_AUTH], b"{}"))

    def lambda_query(self) -> RawCase:
        method, uri, operation = self._route()
        path = self._path(uri)
        extras = self.rng.choice(
            [
                "MaxItems=99999999999999999999",
                "MaxItems=-1",
                "MaxItems=1e3",
                "MaxItems=",
                "MaxItems=%ff",
                "Marker=%%%",
                "Marker=" + "A" * 5000,
                "Marker=////",
                "Qualifier=%00",
                "Qualifier=&Qualifier=1",
                "FunctionVersion=ALL&Marker=Zm9vOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
                "find=LayerVersion",
                "find=LayerVersion&Arn="
                + f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:99999999999999999999",
                "CompatibleRuntime=%E2%82",
                "a=b=c&&&=",
                "%=%",
                "MasterRegion=ALL",
                "FunctionVersion=%FF",
                "Marker=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
                "Marker=" + base64.urlsafe_b64encode(b"fuzz-fn:" + b"9" * 30).decode(),
                "Marker=" + base64.urlsafe_b64encode("fuzz-fn:\u00b2".encode()).decode(),
                "Marker=" + base64.urlsafe_b64encode("\u00b2".encode()).decode(),
                "Marker=" + base64.urlsafe_b64encode(b"9" * 5000).decode(),
                "MaxItems=" + "9" * 5000,
                "MaxItems=%C2%B2",
                "MaxItems=1_0",
                "MaxItems=%201",
            ]
        )
        joiner = "&" if "?" in path else "?"
        return RawCase(
            f"lambda-query {operation.name}",
            http(method, path + joiner + extras, [LAMBDA_AUTH], b""),
        )

    def lambda_headers(self) -> RawCase:
        path = f"/2015-03-31/functions/{FUNCTION}/invocations"
        name, value = self.rng.choice(
            [
                ("X-Amz-Invocation-Type", "Bogus"),
                ("X-Amz-Invocation-Type", ""),
                ("X-Amz-Log-Type", "\x7f"),
                ("X-Amz-Client-Context", "!!!not base64"),
                ("X-Amz-Client-Context", "A" * 20_000),
                ("X-Amz-Client-Context", base64.b64encode(b"\xff\xfe").decode()),
                ("X-Amzn-Trace-Id", "Root=garbage;Parent=;Sampled=9"),
                ("X-Amzn-Trace-Id", "Root=1-" + "f" * 200),
                ("traceparent", "zz-" + "0" * 32 + "-" + "0" * 16 + "-01"),
                ("traceparent", "00-" + "g" * 32 + "-x-y"),
                ("Content-Type", "\x01"),
                ("X-Amz-Invocation-Type", "Event\r\nX-Injected: 1"),
                ("Content-Encoding", "gzip"),
                ("Expect", "100-continue"),
            ]
        )
        headers: list[tuple[str, str | bytes]] = [LAMBDA_AUTH, (name, value)]
        if self.rng.random() < 0.3:
            headers.append((name, value))  # duplicated
        return RawCase(f"lambda-headers {name}", http("POST", path, headers, b'{"k": 1}'))

    # -- JSON protocols (logs, monitoring) -------------------------------------------------

    def json_service(self) -> RawCase:
        rng = self.rng
        logs = rng.random() < 0.6
        prefix = "Logs_20140328" if logs else "GraniteServiceVersion20100801"
        operation = rng.choice(
            [
                "DescribeLogGroups",
                "GetLogEvents",
                "FilterLogEvents",
                "PutLogEvents",
                "CreateLogGroup",
                "DescribeLogStreams",
                "PutRetentionPolicy",
                "StartQuery",
                "Bogus",
            ]
            if logs
            else ["GetMetricStatistics", "GetMetricData", "ListMetrics", "PutMetricData", "Bogus"]
        )
        target = rng.choice(
            [
                f"{prefix}.{operation}",
                f"{prefix}.{operation}",
                prefix,
                f"{prefix}.",
                f".{operation}",
                f"{prefix}.{operation}.x",
                f"{prefix}.{'A' * 5000}",
                f"{prefix}.\u00e9",
                "",
                f"{prefix.lower()}.{operation}",
            ]
        )
        body = rng.choice(HOSTILE_BODIES + self._json_bodies(logs))
        content_type = "application/x-amz-json-1.1" if logs else "application/x-amz-json-1.0"
        headers: list[tuple[str, str | bytes]] = [
            ("X-Amz-Target", target.encode("utf-8")),
            ("Content-Type", content_type),
        ]
        if rng.random() < 0.2:
            headers.append(("X-Amz-Target", f"{prefix}.DescribeLogGroups"))  # duplicated
        method = "POST" if rng.random() < 0.9 else rng.choice(["GET", "PUT", "DELETE"])
        return RawCase(f"json {target[:60]}", http(method, "/", headers, body))

    def _json_bodies(self, logs: bool) -> list[bytes]:
        big = self.rng.choice(NUMBERS)
        if logs:
            return [
                b'{"logGroupName": "'
                + LOG_GROUP.encode()
                + b'", "logStreamName": "'
                + LOG_STREAM.encode()
                + b'", "startTime": '
                + big
                + b"}",
                b'{"logGroupName": "' + LOG_GROUP.encode() + b'", "limit": ' + big + b"}",
                b'{"logGroupName": "'
                + LOG_GROUP.encode()
                + b'", "logStreamName": "'
                + LOG_STREAM.encode()
                + b'", "logEvents": [{"timestamp": '
                + big
                + b', "message": "m"}]}',
                b'{"logGroupName": "' + LOG_GROUP.encode() + b'", "retentionInDays": ' + big + b"}",
                b'{"logGroupName": "'
                + LOG_GROUP.encode()
                + b'", "filterPattern": "{ $.a = '
                + big
                + b' }"}',
                b'{"logGroupName": "' + LOG_GROUP.encode() + b'", "nextToken": "' + big + b'"}',
                b'{"logGroupName": "'
                + LOG_GROUP.encode()
                + b'", "logStreamName": "'
                + LOG_STREAM.encode()
                + b'", "nextToken": "f/'
                + b"9" * 56
                + b'/s"}',
                b'{"logGroupIdentifier": "arn:aws:logs:'
                + REGION.encode()
                + b":"
                + ACCOUNT.encode()
                + b':log-group:\xff"}',
            ]
        return [
            b'{"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Period": '
            + big
            + b', "StartTime": 1, "EndTime": 2, "Statistics": ["Sum"]}',
            b'{"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Period": 60, "StartTime": '
            + big
            + b', "EndTime": '
            + big
            + b', "Statistics": ["Sum"]}',
            b'{"MetricDataQueries": [{"Id": "q", "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", '
            b'"MetricName": "Invocations"}, "Period": '
            + big
            + b', "Stat": "Sum"}}], "StartTime": 0, '
            b'"EndTime": ' + big + b"}",
            b'{"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Period": 60, "StartTime": '
            b'"not a date", "EndTime": "2024-99-99", "Statistics": ["Sum"]}',
        ]

    def query_protocol(self) -> RawCase:
        rng = self.rng
        big = rng.choice(NUMBERS).decode()
        form = rng.choice(
            [
                "Action=GetMetricStatistics&Version=2010-08-01&Namespace=AWS%2FLambda&MetricName=Invocations"
                f"&Period={big}&StartTime=2024-01-01T00:00:00Z&EndTime=2024-01-02T00:00:00Z&Statistics.member.1=Sum",
                "Action=GetMetricStatistics&Namespace=AWS%2FLambda&MetricName=Invocations&Period=60"
                f"&StartTime={big}&EndTime=garbage&Statistics.member.1=Sum",
                "Action=ListMetrics&Dimensions.member.99999999999.Name=x",
                "Action=ListMetrics&Dimensions.member.1.Name=%ff%fe&Dimensions.member.1.Value=%",
                "Action=GetMetricData&MetricDataQueries.member.1.Id=q&MetricDataQueries.member.1.MetricStat.Period="
                f"{big}&StartTime=2024-01-01T00:00:00Z&EndTime=2024-01-02T00:00:00Z",
                "Action=" + "A" * 5000,
                "Action=",
                "Action=PutMetricData&MetricData.member.1.Value=1e999",
                "%%%%",
                "Action=ListMetrics&Action=GetMetricData",
                "\xff\xfe".encode("latin-1").decode("latin-1"),
            ]
        )
        body = form.encode("utf-8", "surrogateescape")
        return RawCase(
            "query-protocol",
            http(
                "POST",
                "/",
                [
                    ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                    (
                        "Authorization",
                        f"AWS4-HMAC-SHA256 Credential=fuzz/20240101/{REGION}/monitoring/aws4_request, "
                        "SignedHeaders=host, Signature=00",
                    ),
                ],
                body,
            ),
        )

    def auth(self) -> RawCase:
        value = self.rng.choice(
            [
                "AWS4-HMAC-SHA256",
                "AWS4-HMAC-SHA256 Credential=",
                "AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f/g/h",
                "AWS4-HMAC-SHA256 Credential=a/b/c/../aws4_request",
                "AWS4-HMAC-SHA256 Credential=a/b/c//aws4_request",
                "AWS4-HMAC-SHA256 Credential=a/b/c/s3/aws4_request",
                "AWS4-HMAC-SHA256 Credential=a/b/c/\u00e9/x",
                "Basic Zm9vOmJhcg==",
                "AWS4-HMAC-SHA256 Credential=a/b/c/logs/aws4_request",
                "AWS4-HMAC-SHA256 Credential=a/b/c/monitoring/aws4_request",
                "x" * 10_000,
                "",
            ]
        )
        path = self.rng.choice(
            [
                "/",
                f"/2015-03-31/functions/{FUNCTION}",
                "/?X-Amz-Credential=a%2Fb%2Fc%2Flogs",
                "/?X-Amz-Credential=%ff",
                "/2015-03-31/functions?X-Amz-Credential=a/b/c/lambda/x",
            ]
        )
        method = self.rng.choice(["GET", "POST"])
        return RawCase(
            "auth", http(method, path, [("Authorization", value.encode("utf-8"))], b"{}")
        )

    # -- HTTP itself ----------------------------------------------------------------------

    def http_level(self) -> RawCase:
        rng = self.rng
        path = f"/2015-03-31/functions/{FUNCTION}"
        body = b'{"k": 1}'
        case = rng.choice(
            [
                (
                    "duplicate content-length",
                    b"POST " + path.encode() + b"/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n" + body,
                ),
                (
                    "negative content-length",
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "text content-length",
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
                ),
                (
                    "huge content-length",
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999999\r\n"
                    b"Connection: close\r\n\r\n",
                ),
                (
                    "bad chunk size",
                    b"POST " + path.encode() + b"/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                ),
                (
                    "chunked and length",
                    b"POST " + path.encode() + b"/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n8\r\n"
                    + body
                    + b"\r\n0\r\n\r\n",
                ),
                (
                    "chunked ok",
                    b"POST " + path.encode() + b"/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n"
                    + body
                    + b"\r\n0\r\n\r\n",
                ),
                (
                    "header without colon",
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\nConnection: close\r\n\r\n",
                ),
                (
                    "space in header name",
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: 1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "nul in header",
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
                ),
                (
                    "oversized header",
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                    + b"a" * 70_000
                    + b"\r\nConnection: close\r\n\r\n",
                ),
                (
                    "many headers",
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
                    + b"Connection: close\r\n\r\n",
                ),
                (
                    "garbage request line",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
                ),
                (
                    "http/2 version",
                    b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                ("http/0.9", b"GET /health\r\n\r\n"),
                (
                    "absolute form",
                    b"GET http://127.0.0.1/2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Connection: close\r\n\r\n",
                ),
                (
                    "asterisk form",
                    b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "unknown method",
                    b"FUZZ /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "lowercase method",
                    b"get /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "non-ascii target",
                    b"GET /2015-03-31/functions/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "utf-8 target",
                    "GET /2015-03-31/functions/caf\u00e9 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
                ),
                ("no host", b"GET /2015-03-31/functions HTTP/1.1\r\nConnection: close\r\n\r\n"),
                (
                    "empty host",
                    b"GET /2015-03-31/functions HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
                ),
                (
                    "weird host",
                    b"GET / HTTP/1.1\r\nHost: "
                    + b"a.lambda-url." * 50
                    + b"\r\nConnection: close\r\n\r\n",
                ),
                (
                    "obs-fold",
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n",
                ),
                ("bare lf", b"GET /health HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n"),
                (
                    "pipelined garbage",
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGARBAGE\r\n\r\n",
                ),
                (
                    "long path",
                    b"GET /"
                    + b"a" * 100_000
                    + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "nul in path",
                    b"GET /2015-03-31/functions/a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                ),
                (
                    "dot segments",
                    b"GET /2015-03-31/functions/../../_ember/async HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Connection: close\r\n\r\n",
                ),
            ]
        )
        return RawCase(f"http {case[0]}", case[1], may_close=True)

    # -- Ember's own routes ---------------------------------------------------------------

    def own_routes(self) -> RawCase:
        rng = self.rng
        target = rng.choice(
            [
                "/health",
                "/health?x=%ff",
                "/metrics",
                "/metrics?%%",
                "/_ember/async",
                "/_ember/async?x=1",
                "/_ember/code/" + "0" * 64 + ".zip",
                "/_ember/code/" + "0" * 64 + ".zip?expires=abc&signature=x",
                "/_ember/code/..%2F..%2Fsecret.key.zip?expires=99999999999&signature=00",
                "/_ember/code/%00.zip?expires=1e999&signature=",
                "/_ember/code/" + "a" * 5000 + ".zip",
                "/_ember/code/x.zip?expires=99999999999999999999999999&signature=" + "0" * 64,
                "/_ember/code/x.zip?expires=" + "9" * 5000 + "&signature=x",
                "/_ember/code/x.zip?expires=99999999999&signature=%C3%A9",
                "/_ember/code/x.zip?expires=%C2%B2",
                "/_ember/traces",
                "/_ember/traces?limit=abc",
                "/_ember/traces?limit=99999999999999999999",
                "/_ember/traces?limit=-5&function=%ff",
                "/_ember/traces/" + "f" * 32,
                "/_ember/traces/%ff%fe",
                "/_ember/traces/1-00000000-" + "0" * 24,
                "/_ember/traces/" + "1" * 5000,
                "/_ember/usage?since=nan",
                "/_ember/usage?since=inf",
                "/_ember/usage?since=1e999",
                "/_ember/usage?since=-1&by=x",
                "/_ember/usage?by=version",
                "/_ember/metrics?minutes=nan",
                "/_ember/metrics?minutes=1e308",
                "/_ember/metrics?minutes=0.5",
                "/_ember/metrics?function=%00",
                "/_ember/metrics?minutes=1440&function=" + FUNCTION + "&version=%ff",
                "/_ember/nothing",
                "/_ember/",
                "/_ember/url/",
                "/_ember/url/" + "a" * 32 + "/x?%%=%%",
                "/_ember/url/%ff/",
                "/_ember/url/" + "z" * 5000,
            ]
        )
        method = rng.choice(["GET", "GET", "GET", "POST", "DELETE", "HEAD", "OPTIONS"])
        return RawCase(f"own {target[:50]}", http(method, target, [], b""))


# ---------------------------------------------------------------------------------- server log


def log_problems(text: str) -> Counter[str]:
    """The tracebacks in a server's log, as `<the line before it> | <the exception>` with counts:
    an error the server logged as unhandled is a finding even when no client saw a 5xx (the
    client had gone)."""
    found: Counter[str] = Counter()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            context = lines[index - 1] if index else ""
            end = next(
                (later for later in lines[index + 1 :] if later and not later.startswith(" ")), ""
            )
            found[f"{context} | {end}"] += 1
    return found


# ---------------------------------------------------------------------------------- both


def fuzz(
    endpoint: str,
    seed: int,
    model_budget: int,
    raw_budget: int,
    runtime: str,
    deadline: float | None = None,
) -> Tally:
    """Both fuzzers against a running server; the tally of what they found."""
    tally = Tally()
    tally.add(ModelFuzzer(endpoint, seed, runtime).run(model_budget, deadline))
    tally.add(RawFuzzer(endpoint, seed).run(raw_budget, deadline))
    return tally
