"""Versions and aliases on a live `ember server`, driven with boto3 as a user would.

Publish immutable versions, point aliases at them, shift traffic with routing weights and count
where invocations land; every refusal carries AWS's error name and status.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LiveServer, make_zip
from invoking import deploy, invoke, ok

VERSIONED = """
import os

TAG = "{tag}"

def handler(event, context):
    return {{
        "tag": TAG,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
    }}
"""


def code(tag: str) -> bytes:
    return make_zip({"app.py": VERSIONED.format(tag=tag)})


def client_error(call: Any, **params: Any) -> tuple[int, str, str]:
    """Make a call that must fail; returns (HTTP status, error code, message)."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def two_versions(lam: Any) -> str:
    """A function with versions 1 ("one") and 2 ("two"); $LATEST is "two"."""
    name = deploy(lam, VERSIONED.format(tag="one"), prefix="ver")
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=code("two"))
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    return name


def test_publish_snapshots_latest_and_is_idempotent(lam: Any) -> None:
    name = deploy(lam, VERSIONED.format(tag="one"), prefix="ver")
    latest = lam.get_function_configuration(FunctionName=name)
    v1 = lam.publish_version(FunctionName=name, Description="first release")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1"
    assert v1["Description"] == "first release"
    assert v1["FunctionArn"] == latest["FunctionArn"] + ":1"
    assert v1["CodeSha256"] == latest["CodeSha256"]
    # Nothing changed since version 1: publishing again returns it.
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    # A configuration change is a change.
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    v2 = lam.publish_version(FunctionName=name, CodeSha256=latest["CodeSha256"])
    assert (v2["Version"], v2["MemorySize"]) == ("2", 256)
    # Versions are immutable: $LATEST moves on, version 1 keeps its code and configuration.
    lam.update_function_code(FunctionName=name, ZipFile=code("three"))
    assert ok(lam, name, Qualifier="1")["tag"] == "one"
    assert lam.get_function_configuration(FunctionName=name, Qualifier="1")["MemorySize"] == 128
    assert ok(lam, name)["tag"] == "three"
    got = lam.get_function(FunctionName=name, Qualifier="2")["Configuration"]
    assert (got["Version"], got["FunctionArn"]) == ("2", latest["FunctionArn"] + ":2")


def test_publish_refusals(lam: Any) -> None:
    name = deploy(lam, VERSIONED.format(tag="one"), prefix="ver")
    status, error, message = client_error(lam.publish_version, FunctionName=name, CodeSha256="AAAA")
    assert (status, error) == (400, "InvalidParameterValueException")
    assert "is different from current CodeSHA256 in $LATEST" in message
    status, error, _ = client_error(lam.publish_version, FunctionName=name, RevisionId="stale")
    assert (status, error) == (412, "PreconditionFailedException")
    status, error, _ = client_error(lam.publish_version, FunctionName=name + "-missing")
    assert (status, error) == (404, "ResourceNotFoundException")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST"
    ]


def test_publish_on_create_and_update_code(lam: Any, server: LiveServer) -> None:
    name = f"pub-{server.port}-{id(lam)}"
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/r",
        Handler="app.handler",
        Code={"ZipFile": code("one")},
        Publish=True,
    )
    assert created["Version"] == "1"
    assert created["FunctionArn"].endswith(f":function:{name}:1")
    updated = lam.update_function_code(FunctionName=name, ZipFile=code("two"), Publish=True)
    assert updated["Version"] == "2"
    assert ok(lam, name, Qualifier="1")["tag"] == "one"
    assert ok(lam, name, Qualifier="2")["tag"] == "two"
    lam.delete_function(FunctionName=name)


def test_invoke_by_version_alias_latest_and_arn(lam: Any) -> None:
    name = two_versions(lam)
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    cases = [
        ({"FunctionName": name}, "$LATEST", "two"),
        ({"FunctionName": name, "Qualifier": "$LATEST"}, "$LATEST", "two"),
        ({"FunctionName": name, "Qualifier": "1"}, "1", "one"),
        ({"FunctionName": f"{name}:2"}, "2", "two"),
        ({"FunctionName": f"{arn}:1"}, "1", "one"),
        ({"FunctionName": name, "Qualifier": "live"}, "1", "one"),
        ({"FunctionName": f"{arn}:live"}, "1", "one"),
    ]
    for params, version, tag in cases:
        params = dict(params)
        result = invoke(lam, params.pop("FunctionName"), {}, **params)
        assert result.function_error is None, result.payload
        assert result.executed_version == version, params
        assert result.headers["x-amz-executed-version"] == version
        assert result.payload["tag"] == tag
        assert result.payload["version"] == version
        assert result.payload["env_version"] == version
        assert f"START RequestId: {result.request_id} Version: {version}" in result.log
    via_alias = ok(lam, name, Qualifier="live")
    assert via_alias["arn"] == f"{arn}:live"
    for qualifier in ("9", "nope"):
        status, error, message = client_error(lam.invoke, FunctionName=name, Qualifier=qualifier)
        assert (status, error) == (404, "ResourceNotFoundException")
        assert message == f"Function not found: {arn}:{qualifier}"
    status, error, _ = client_error(lam.invoke, FunctionName=f"{name}:1", Qualifier="2")
    assert (status, error) == (400, "InvalidParameterValueException")


def test_versions_list_paginated_and_list_functions_all(lam: Any) -> None:
    name = two_versions(lam)
    lam.update_function_code(FunctionName=name, ZipFile=code("three"))
    lam.publish_version(FunctionName=name)
    pages = lam.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}
    )
    seen = [v for page in pages for v in page["Versions"]]
    assert [v["Version"] for v in seen] == ["$LATEST", "1", "2", "3"]
    assert all(v["FunctionArn"].endswith(f":{name}:{v['Version']}") for v in seen)
    everything = [
        f["FunctionArn"].split(":function:")[1]
        for page in lam.get_paginator("list_functions").paginate(
            FunctionVersion="ALL", PaginationConfig={"PageSize": 2}
        )
        for f in page["Functions"]
    ]
    assert [e for e in everything if e.startswith(name + ":")] == [
        f"{name}:$LATEST",
        f"{name}:1",
        f"{name}:2",
        f"{name}:3",
    ]
    plain = [
        f["FunctionName"]
        for page in lam.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    ]
    assert plain.count(name) == 1
    status, error, _ = client_error(lam.list_versions_by_function, FunctionName=name + "-missing")
    assert (status, error) == (404, "ResourceNotFoundException")


def test_delete_one_version(lam: Any) -> None:
    name = two_versions(lam)
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="2")
    status, error, message = client_error(lam.delete_function, FunctionName=name, Qualifier="1")
    assert (status, error) == (409, "ResourceConflictException")
    assert message == "Unable to delete version because the following aliases reference it: [prod]"
    status, error, _ = client_error(lam.delete_function, FunctionName=name, Qualifier="$LATEST")
    assert (status, error) == (400, "InvalidParameterValueException")
    status, error, _ = client_error(lam.delete_function, FunctionName=name, Qualifier="7")
    assert (status, error) == (404, "ResourceNotFoundException")
    lam.delete_alias(FunctionName=name, Name="prod")
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST",
        "2",
    ]
    status, error, _ = client_error(lam.invoke, FunctionName=name, Qualifier="1")
    assert (status, error) == (404, "ResourceNotFoundException")
    # Version numbers are never reused.
    lam.update_function_code(FunctionName=name, ZipFile=code("three"))
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    assert ok(lam, name, Qualifier="canary")["tag"] == "two"
    lam.delete_function(FunctionName=name)
    status, error, _ = client_error(lam.get_alias, FunctionName=name, Name="canary")
    assert (status, error) == (404, "ResourceNotFoundException")


def test_alias_lifecycle(lam: Any) -> None:
    name = two_versions(lam)
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    created = lam.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1", Description="stable"
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == f"{arn}:live"
    assert (created["FunctionVersion"], created["Description"]) == ("1", "stable")
    assert "RoutingConfig" not in created
    got = lam.get_alias(FunctionName=name, Name="live")
    assert got["RevisionId"] == created["RevisionId"]
    # By alias ARN, as everywhere a function name goes.
    assert lam.get_function_configuration(FunctionName=f"{arn}:live")["Version"] == "1"
    updated = lam.update_alias(
        FunctionName=name, Name="live", FunctionVersion="2", RevisionId=created["RevisionId"]
    )
    assert updated["FunctionVersion"] == "2"
    assert updated["Description"] == "stable"
    assert updated["RevisionId"] != created["RevisionId"]
    assert ok(lam, name, Qualifier="live")["tag"] == "two"
    status, error, _ = client_error(
        lam.update_alias,
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RevisionId=created["RevisionId"],
    )
    assert (status, error) == (412, "PreconditionFailedException")
    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    pages = lam.get_paginator("list_aliases").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 2}
    )
    assert [a["Name"] for page in pages for a in page["Aliases"]] == ["edge", "live", "old"]
    only_one = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in only_one] == ["old"]
    # An alias's event invoke config is keyed by the alias.
    lam.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=0
    )
    config = lam.get_function_event_invoke_config(FunctionName=f"{name}:live")
    assert config["FunctionArn"] == f"{arn}:live"
    lam.delete_alias(FunctionName=name, Name="old")
    status, error, message = client_error(lam.get_alias, FunctionName=name, Name="old")
    assert (status, error) == (404, "ResourceNotFoundException")
    assert message == f"Cannot find alias arn: {arn}:old"
    status, error, _ = client_error(lam.invoke, FunctionName=name, Qualifier="old")
    assert (status, error) == (404, "ResourceNotFoundException")


def test_alias_refusals(lam: Any, lam_raw: Any) -> None:
    name = two_versions(lam)
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"Name": "live", "FunctionVersion": "2"}, 409, "ResourceConflictException"),
        ({"Name": "ghost", "FunctionVersion": "9"}, 404, "ResourceNotFoundException"),
        (
            {
                "Name": "two",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}},
            },
            400,
            "InvalidParameterValueException",
        ),
        (
            {
                "Name": "same",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}},
            },
            400,
            "InvalidParameterValueException",
        ),
        (
            {
                "Name": "latest",
                "FunctionVersion": "$LATEST",
                "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}},
            },
            400,
            "InvalidParameterValueException",
        ),
        (
            {
                "Name": "missing",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"9": 0.5}},
            },
            404,
            "ResourceNotFoundException",
        ),
        (
            {
                "Name": "heavy",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}},
            },
            400,
            "ValidationException",
        ),
        ({"Name": "123", "FunctionVersion": "1"}, 400, "ValidationException"),
    ]
    for params, want_status, want_error in cases:
        status, error, message = client_error(lam_raw.create_alias, FunctionName=name, **params)
        assert (status, error) == (want_status, want_error), (params, message)
    _, _, message = client_error(
        lam.create_alias, FunctionName=name, Name="live", FunctionVersion="2"
    )
    assert message == f"Alias already exists: {arn}:live"
    status, error, _ = client_error(
        lam.create_alias, FunctionName=name + "-missing", Name="x", FunctionVersion="1"
    )
    assert (status, error) == (404, "ResourceNotFoundException")
    status, error, _ = client_error(
        lam.update_alias, FunctionName=name, Name="ghost", FunctionVersion="1"
    )
    assert (status, error) == (404, "ResourceNotFoundException")
    status, error, _ = client_error(lam.delete_function, FunctionName=name, Qualifier="live")
    assert (status, error) == (400, "InvalidParameterValueException")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["live"]


def _landed(lam: Any, name: str, calls: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(calls):
        response = lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
        result = json.loads(response["Payload"].read())
        assert result["version"] == response["ExecutedVersion"]
        counts[response["ExecutedVersion"]] += 1
    return counts


def test_alias_traffic_shifting(lam: Any) -> None:
    """10 % → 50 % → 100 % of an alias's traffic to version 2, counted over many calls. The
    bounds are five standard deviations of a binomial count: a false failure is ~1 in 10^6."""
    name = two_versions(lam)
    calls = 400
    lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    for weight in (0.1, 0.5):
        if weight != 0.1:
            updated = lam.update_alias(
                FunctionName=name,
                Name="live",
                RoutingConfig={"AdditionalVersionWeights": {"2": weight}},
            )
            assert updated["RoutingConfig"] == {"AdditionalVersionWeights": {"2": weight}}
        counts = _landed(lam, name, calls)
        assert set(counts) <= {"1", "2"}
        mean = calls * weight
        spread = 5 * (calls * weight * (1 - weight)) ** 0.5
        assert mean - spread <= counts["2"] <= mean + spread, (weight, counts)
    done = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={})
    assert done["FunctionVersion"] == "2" and "RoutingConfig" not in done
    assert _landed(lam, name, calls) == Counter({"2": calls})


def test_versions_with_the_aws_cli(lam: Any, server: LiveServer, tmp_path: Path) -> None:
    name = deploy(lam, VERSIONED.format(tag="one"), prefix="ver")
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": str(Path(".venv/bin").resolve()) + ":/usr/bin:/bin",
    }
    base = ["aws", "--endpoint-url", server.endpoint, "lambda"]

    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [*base, *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return dict(json.loads(done.stdout)) if done.stdout.strip() else {}

    assert cli("publish-version", "--function-name", name)["Version"] == "1"
    cli("create-alias", "--function-name", name, "--name", "live", "--function-version", "1")
    out = tmp_path / "out.json"
    meta = cli(
        "invoke", "--function-name", name, "--qualifier", "live", "--log-type", "Tail", str(out)
    )
    assert meta["ExecutedVersion"] == "1"
    assert json.loads(out.read_text())["tag"] == "one"
    assert "Version: 1" in base64.b64decode(meta["LogResult"]).decode()
