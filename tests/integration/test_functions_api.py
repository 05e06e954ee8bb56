"""The functions API on a live `ember server`, driven by boto3 (and the AWS CLI) as a user would.

Every operation of the control plane, every field AWS returns, and every error case: each error
test checks the HTTP status, the error code (body and `X-Amzn-ErrorType`), and that the store
holds exactly what it held before the request.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, LiveServer, create, make_zip

ACCOUNT = "000000000000"
REGION = "us-east-1"
LAST_MODIFIED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
CODE = "def handler(event, context):\n    return 'hello'\n"


def unique(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def config_of(lam: Any, name: str) -> dict[str, Any]:
    found = dict(lam.get_function_configuration(FunctionName=name))
    found.pop("ResponseMetadata")
    return found


def client_error(call: Callable[..., Any], **params: Any) -> tuple[int, str, str]:
    """Make a call that must fail; returns (HTTP status, error code, message)."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    code = response["Error"]["Code"]
    assert response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype") == code
    return status, code, response["Error"]["Message"]


def snapshot(server: LiveServer, lam: Any) -> dict[str, Any]:
    """Everything a rejected request must leave untouched: functions, usage, stored code."""
    names = [
        f["FunctionName"]
        for page in lam.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    ]
    code_dir = server.data_dir / "code"
    return {
        "functions": names,
        "usage": lam.get_account_settings()["AccountUsage"],
        "files": sorted(str(p.relative_to(code_dir)) for p in code_dir.rglob("*")),
    }


@pytest.fixture
def unchanged(server: LiveServer, lam: Any) -> Iterator[None]:
    """Asserts, after the test, that the store is exactly as it was before it."""
    before = snapshot(server, lam)
    yield
    assert snapshot(server, lam) == before


def create_params(name: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": CODE})},
    }
    params.update(overrides)
    return params


def raw_post(
    server: LiveServer, path: str, body: Any, length: int | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST without any SDK in between; returns (status, headers, body) even for errors."""
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers["Content-Length"] = str(length)
    request = urllib.request.Request(
        server.endpoint + path, data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- CreateFunction / GetFunction / GetFunctionConfiguration -------------------------------


def test_create_returns_the_configuration_aws_returns(lam: Any) -> None:
    name = unique()
    zip_bytes = make_zip({"app.py": CODE})
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_bytes},
        Description="first",
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["Runtime"] == "python3.11"
    assert created["Role"] == ROLE
    assert created["Handler"] == "app.handler"
    assert created["Description"] == "first"
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["Version"] == "$LATEST"
    assert LAST_MODIFIED.fullmatch(created["LastModified"])
    assert created["PackageType"] == "Zip"
    assert created["State"] == "Active"
    assert created["LastUpdateStatus"] == "Successful"
    assert created["CodeSha256"] == sha256_b64(zip_bytes)
    assert created["CodeSize"] == len(zip_bytes)
    assert created["Architectures"] == ["x86_64"]
    assert created["TracingConfig"] == {"Mode": "PassThrough"}
    assert created["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{name}"
    assert created["LoggingConfig"]["LogFormat"] == "Text"
    assert re.fullmatch(r"[0-9a-f-]{36}", created["RevisionId"])
    assert "Environment" not in created


def test_create_keeps_every_given_setting(lam: Any) -> None:
    name = unique()
    created = create(
        lam,
        name,
        CODE,
        runtime="python3.12",
        Timeout=30,
        MemorySize=1024,
        EphemeralStorage={"Size": 1024},
        Environment={"Variables": {"STAGE": "test", "DEBUG": "1"}},
        Description="settings",
        TracingConfig={"Mode": "Active"},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"},
    )
    assert created["Runtime"] == "python3.12"
    assert created["Timeout"] == 30
    assert created["MemorySize"] == 1024
    assert created["EphemeralStorage"] == {"Size": 1024}
    assert created["Environment"] == {"Variables": {"STAGE": "test", "DEBUG": "1"}}
    assert created["TracingConfig"] == {"Mode": "Active"}
    assert created["LoggingConfig"]["LogFormat"] == "JSON"
    assert created["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"
    stored = config_of(lam, name)
    for key in (
        "Runtime",
        "Timeout",
        "MemorySize",
        "EphemeralStorage",
        "Environment",
        "TracingConfig",
        "LoggingConfig",
        "Description",
        "RevisionId",
        "CodeSha256",
        "LastModified",
    ):
        assert stored[key] == created[key], key


def test_get_function_returns_configuration_and_a_working_code_location(lam: Any) -> None:
    name = unique()
    zip_bytes = make_zip({"app.py": CODE, "lib/helper.py": "X = 1\n"})
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_bytes},
        Tags={"team": "ember"},
    )
    got = lam.get_function(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Configuration"]["FunctionArn"] == arn(name)
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert got["Configuration"]["CodeSha256"] == sha256_b64(zip_bytes)
    assert got["Code"]["RepositoryType"] == "S3"
    assert got["Tags"] == {"team": "ember"}
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as response:
        assert response.status == 200
        assert response.read() == zip_bytes


def test_code_location_refuses_a_tampered_signature(lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    tampered = re.sub(r"signature=[0-9a-f]+", "signature=" + "0" * 64, location)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(tampered, timeout=30)
    assert caught.value.code == 403


def test_get_function_configuration(lam: Any) -> None:
    name = unique()
    created = create(lam, name, CODE)
    got = lam.get_function_configuration(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    created.pop("ResponseMetadata")
    got.pop("ResponseMetadata")
    assert got == created


@pytest.mark.parametrize(
    "form",
    [
        lambda name: name,
        lambda name: f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        lambda name: f"000000000000:function:{name}",
        lambda name: f"{name}:$LATEST",
    ],
    ids=["name", "full-arn", "partial-arn", "name-with-qualifier"],
)
def test_function_named_by_name_full_arn_and_partial_arn(
    lam: Any, form: Callable[[str], str]
) -> None:
    name = unique()
    create(lam, name, CODE)
    identifier = form(name)
    assert lam.get_function(FunctionName=identifier)["Configuration"]["FunctionName"] == name
    assert lam.get_function_configuration(FunctionName=identifier)["FunctionName"] == name
    updated = lam.update_function_configuration(
        FunctionName=identifier, Description="by " + identifier
    )
    assert updated["Description"] == "by " + identifier
    new_zip = make_zip({"app.py": CODE + "# v2\n"})
    assert lam.update_function_code(FunctionName=identifier, ZipFile=new_zip)[
        "CodeSha256"
    ] == sha256_b64(new_zip)
    if not identifier.endswith(":$LATEST"):  # deleting "$LATEST" alone is refused, as on AWS
        assert (
            lam.delete_function(FunctionName=identifier)["ResponseMetadata"]["HTTPStatusCode"]
            == 204
        )
        client_error(lam.get_function, FunctionName=name)


# -- UpdateFunctionCode -----------------------------------------------------------------------


def test_update_function_code(lam: Any) -> None:
    name = unique()
    before = create(lam, name, CODE)
    new_zip = make_zip({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    updated = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["CodeSha256"] == sha256_b64(new_zip)
    assert updated["CodeSize"] == len(new_zip)
    assert updated["RevisionId"] != before["RevisionId"]
    assert LAST_MODIFIED.fullmatch(updated["LastModified"])
    assert updated["LastModified"] >= before["LastModified"]
    stored = config_of(lam, name)
    assert stored["CodeSha256"] == sha256_b64(new_zip)
    assert stored["RevisionId"] == updated["RevisionId"]
    for key in ("Handler", "Runtime", "Timeout", "MemorySize", "Role"):
        assert stored[key] == before[key]
    with urllib.request.urlopen(
        lam.get_function(FunctionName=name)["Code"]["Location"], timeout=30
    ) as r:
        assert r.read() == new_zip


def test_update_function_code_with_the_current_revision_id(lam: Any) -> None:
    name = unique()
    before = create(lam, name, CODE)
    new_zip = make_zip({"app.py": CODE + "# rev\n"})
    updated = lam.update_function_code(
        FunctionName=name, ZipFile=new_zip, RevisionId=before["RevisionId"]
    )
    assert updated["CodeSha256"] == sha256_b64(new_zip)


def test_update_function_code_dry_run_changes_nothing(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    before_config = config_of(lam, name)
    before = snapshot(server, lam)
    new_zip = make_zip({"app.py": CODE + "# dry\n"})
    answered = lam.update_function_code(FunctionName=name, ZipFile=new_zip, DryRun=True)
    assert answered["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answered["FunctionName"] == name
    assert config_of(lam, name) == before_config
    assert snapshot(server, lam) == before


def test_update_function_code_dry_run_still_validates(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, message = client_error(
        lam.update_function_code, FunctionName=name, ZipFile=b"not a zip", DryRun=True
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("Could not unzip uploaded file")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


# -- UpdateFunctionConfiguration --------------------------------------------------------------


def test_update_function_configuration_merges_fields_and_replaces_environment(lam: Any) -> None:
    name = unique()
    before = create(
        lam,
        name,
        CODE,
        Description="original",
        Timeout=5,
        Environment={"Variables": {"FOO": "1", "BAR": "2"}},
    )
    updated = lam.update_function_configuration(FunctionName=name, MemorySize=256)
    assert updated["MemorySize"] == 256
    assert updated["Description"] == "original"
    assert updated["Timeout"] == 5
    assert updated["Environment"] == {"Variables": {"FOO": "1", "BAR": "2"}}
    assert updated["CodeSha256"] == before["CodeSha256"]
    assert updated["RevisionId"] != before["RevisionId"]

    replaced = lam.update_function_configuration(
        FunctionName=name,
        Environment={"Variables": {"BAZ": "3"}},
        Timeout=60,
        Handler="app.other",
    )
    assert replaced["Environment"] == {"Variables": {"BAZ": "3"}}
    assert replaced["Timeout"] == 60
    assert replaced["Handler"] == "app.other"
    assert replaced["MemorySize"] == 256
    assert replaced["RevisionId"] != updated["RevisionId"]

    stored = config_of(lam, name)
    assert stored["Environment"] == {"Variables": {"BAZ": "3"}}
    assert stored["RevisionId"] == replaced["RevisionId"]
    assert stored["Description"] == "original"

    cleared = lam.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
    assert not cleared.get("Environment", {}).get("Variables")


def test_update_function_configuration_with_the_current_revision_id(lam: Any) -> None:
    name = unique()
    before = create(lam, name, CODE)
    updated = lam.update_function_configuration(
        FunctionName=name, Timeout=10, RevisionId=before["RevisionId"]
    )
    assert updated["Timeout"] == 10


def test_update_function_configuration_can_change_runtime(lam: Any) -> None:
    name = unique()
    create(lam, name, CODE, runtime="python3.11")
    assert (
        lam.update_function_configuration(FunctionName=name, Runtime="python3.12")["Runtime"]
        == "python3.12"
    )
    assert config_of(lam, name)["Runtime"] == "python3.12"


# -- DeleteFunction ----------------------------------------------------------------------------


def test_delete_function(lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    deleted = lam.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    status, code, _ = client_error(lam.get_function, FunctionName=name)
    assert (status, code) == (404, "ResourceNotFoundException")
    names = [
        f["FunctionName"]
        for p in lam.get_paginator("list_functions").paginate()
        for f in p["Functions"]
    ]
    assert name not in names
    # The name is free again.
    assert create(lam, name, CODE)["FunctionName"] == name


# -- ListFunctions -----------------------------------------------------------------------------


def test_list_functions_paginates_with_marker(lam: Any) -> None:
    prefix = unique("list")
    created = [f"{prefix}-{i}" for i in range(7)]
    for name in created:
        create(lam, name, CODE)
    seen: list[str] = []
    params: dict[str, Any] = {"MaxItems": 2}
    pages = 0
    while True:
        page = lam.list_functions(**params)
        pages += 1
        assert page["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert len(page["Functions"]) <= 2
        for function in page["Functions"]:
            assert LAST_MODIFIED.fullmatch(function["LastModified"])
            assert function["FunctionArn"] == arn(function["FunctionName"])
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
        params["Marker"] = marker
        assert pages < 1000
    ours = [name for name in seen if name.startswith(prefix + "-")]
    assert ours == sorted(created)  # every one exactly once, in order
    assert len(seen) == len(set(seen))


def test_list_functions_paginator_sees_everything(lam: Any) -> None:
    prefix = unique("pager")
    created = sorted(f"{prefix}-{i}" for i in range(3))
    for name in created:
        create(lam, name, CODE)
    listed = [
        f["FunctionName"]
        for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
        for f in page["Functions"]
    ]
    assert [n for n in listed if n.startswith(prefix)] == created


# -- GetAccountSettings ------------------------------------------------------------------------


def test_get_account_settings(lam: Any) -> None:
    before = lam.get_account_settings()
    assert before["ResponseMetadata"]["HTTPStatusCode"] == 200
    limit = before["AccountLimit"]
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] <= limit["ConcurrentExecutions"]
    assert limit["TotalCodeSize"] > 0
    zip_bytes = make_zip({"app.py": CODE + f"# {uuid.uuid4()}\n"})
    lam.create_function(
        FunctionName=unique(),
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_bytes},
    )
    after = lam.get_account_settings()["AccountUsage"]
    assert after["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert after["TotalCodeSize"] == before["AccountUsage"]["TotalCodeSize"] + len(zip_bytes)


# -- Errors: missing, duplicate, stale --------------------------------------------------------


@pytest.mark.parametrize(
    "operation, params",
    [
        ("get_function", {}),
        ("get_function_configuration", {}),
        ("update_function_configuration", {"Timeout": 10}),
        ("update_function_code", {"ZipFile": make_zip({"app.py": CODE})}),
        ("delete_function", {}),
    ],
)
def test_missing_function_is_404(
    lam: Any, unchanged: None, operation: str, params: dict[str, Any]
) -> None:
    name = unique("missing")
    status, code, message = client_error(getattr(lam, operation), FunctionName=name, **params)
    assert (status, code) == (404, "ResourceNotFoundException")
    assert name in message


def test_duplicate_create_is_409(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    original = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, message = client_error(
        lam.create_function,
        **create_params(
            name, Description="second", Code={"ZipFile": make_zip({"app.py": "x = 2\n"})}
        ),
    )
    assert (status, code) == (409, "ResourceConflictException")
    assert name in message
    assert config_of(lam, name) == original
    assert snapshot(server, lam) == before


def test_stale_revision_id_on_update_configuration_is_412(server: LiveServer, lam: Any) -> None:
    name = unique()
    first = create(lam, name, CODE)
    lam.update_function_configuration(FunctionName=name, Description="moved on")
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, _ = client_error(
        lam.update_function_configuration,
        FunctionName=name,
        Timeout=99,
        Runtime="python3.13",
        RevisionId=first["RevisionId"],
    )
    assert (status, code) == (412, "PreconditionFailedException")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


def test_stale_revision_id_on_update_code_is_412(server: LiveServer, lam: Any) -> None:
    name = unique()
    first = create(lam, name, CODE)
    lam.update_function_configuration(FunctionName=name, Description="moved on")
    current = config_of(lam, name)
    before = snapshot(server, lam)
    for dry_run in (False, True):
        status, code, _ = client_error(
            lam.update_function_code,
            FunctionName=name,
            ZipFile=make_zip({"app.py": f"x = '{uuid.uuid4()}'\n"}),
            RevisionId=first["RevisionId"],
            DryRun=dry_run,
        )
        assert (status, code) == (412, "PreconditionFailedException")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


# -- Errors: out-of-range and malformed settings ----------------------------------------------

OUT_OF_RANGE = [
    ({"MemorySize": 127}, "memorySize"),
    ({"MemorySize": 10241}, "memorySize"),
    ({"Timeout": 0}, "timeout"),
    ({"Timeout": 901}, "timeout"),
    ({"EphemeralStorage": {"Size": 511}}, "ephemeralStorage.size"),
    ({"EphemeralStorage": {"Size": 10241}}, "ephemeralStorage.size"),
]


@pytest.mark.parametrize("setting, member", OUT_OF_RANGE, ids=lambda v: str(v))
def test_out_of_range_create_is_400(
    lam_raw: Any, unchanged: None, setting: dict[str, Any], member: str
) -> None:
    name = unique()
    status, code, message = client_error(lam_raw.create_function, **create_params(name, **setting))
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("1 validation error detected: ")
    assert f"at '{member}' failed to satisfy constraint" in message
    client_error(lam_raw.get_function, FunctionName=name)


@pytest.mark.parametrize("setting, member", OUT_OF_RANGE, ids=lambda v: str(v))
def test_out_of_range_update_is_400(
    server: LiveServer, lam: Any, lam_raw: Any, setting: dict[str, Any], member: str
) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, message = client_error(
        lam_raw.update_function_configuration, FunctionName=name, **setting
    )
    assert (status, code) == (400, "ValidationException")
    assert member in message
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


def test_several_violations_are_reported_together(lam_raw: Any, unchanged: None) -> None:
    status, code, message = client_error(
        lam_raw.create_function, **create_params(unique(), MemorySize=127, Timeout=0)
    )
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("2 validation errors detected: ")
    assert "memorySize" in message and "timeout" in message


@pytest.mark.parametrize(
    "override, member",
    [
        ({"FunctionName": "bad name!"}, "functionName"),
        ({"Handler": "a b"}, "handler"),
        ({"Role": "not-a-role"}, "role"),
        ({"FunctionName": "x" * 65}, "functionName"),
        # Keys need two characters or more, as on AWS (the model's [a-zA-Z]([a-zA-Z0-9_])+).
        ({"Environment": {"Variables": {"A": "1"}}}, "environment.variables"),
        ({"Environment": {"Variables": {"MY-VAR": "1"}}}, "environment.variables"),
    ],
    ids=["name", "handler", "role", "long-name", "one-letter-env", "dash-env"],
)
def test_bad_patterns_are_400(
    lam_raw: Any, unchanged: None, override: dict[str, Any], member: str
) -> None:
    status, code, message = client_error(
        lam_raw.create_function, **create_params(unique(), **override)
    )
    assert (status, code) == (400, "ValidationException")
    assert f"at '{member}' failed to satisfy constraint" in message


def test_missing_required_member_is_400(lam_raw: Any, unchanged: None) -> None:
    params = create_params(unique())
    del params["Role"]
    status, code, message = client_error(lam_raw.create_function, **params)
    assert (status, code) == (400, "ValidationException")
    assert "Value null at 'role' failed to satisfy constraint: Member must not be null" in message


def test_unsupported_runtime_names_the_runtimes_this_host_runs(
    server: LiveServer, lam_raw: Any, unchanged: None
) -> None:
    with urllib.request.urlopen(server.endpoint + "/health", timeout=10) as response:
        installed = json.loads(response.read())["runtimes"]
    assert installed, "the host should run at least one python3.x runtime"
    status, code, message = client_error(
        lam_raw.create_function, **create_params(unique(), Runtime="nodejs20.x")
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "nodejs20.x" in message
    assert re.search(r"python3\.1\d", message)
    for runtime in installed:
        assert runtime in message


def test_unsupported_runtime_on_update_is_400(server: LiveServer, lam: Any, lam_raw: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, _ = client_error(
        lam_raw.update_function_configuration, FunctionName=name, Runtime="nodejs20.x"
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


def test_reserved_environment_variable_is_400(lam_raw: Any, unchanged: None) -> None:
    status, code, message = client_error(
        lam_raw.create_function,
        **create_params(
            unique(), Environment={"Variables": {"AWS_REGION": "eu-west-1", "MINE": "ok"}}
        ),
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "reserved keys" in message
    assert "AWS_REGION" in message
    assert "MINE" not in message


def test_environment_over_4kb_is_400(lam_raw: Any, unchanged: None) -> None:
    status, code, message = client_error(
        lam_raw.create_function,
        **create_params(unique(), Environment={"Variables": {"BIG": "x" * 4100}}),
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "4KB" in message


def test_environment_of_exactly_4kb_is_accepted(lam: Any) -> None:
    # Measured as AWS does, on the JSON text of the variables: {"BIG":"xxx…"} is 10 + n bytes.
    name = unique()
    created = create(lam, name, CODE, Environment={"Variables": {"BIG": "x" * 4086}})
    assert len(created["Environment"]["Variables"]["BIG"]) == 4086
    status, code, _ = client_error(
        lam.update_function_configuration,
        FunctionName=name,
        Environment={"Variables": {"BIG": "x" * 4087}},
    )
    assert (status, code) == (400, "InvalidParameterValueException")


def test_reserved_environment_variable_on_update_is_400(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE, Environment={"Variables": {"KEEP": "me"}})
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, _ = client_error(
        lam.update_function_configuration,
        FunctionName=name,
        Environment={"Variables": {"LAMBDA_TASK_ROOT": "/x"}},
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


# -- Errors: code packages ---------------------------------------------------------------------


def test_not_a_zip_is_400(lam: Any, unchanged: None) -> None:
    status, code, message = client_error(
        lam.create_function, **create_params(unique(), Code={"ZipFile": b"this is not a zip file"})
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("Could not unzip uploaded file")


def test_not_a_zip_on_update_code_is_400(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, message = client_error(
        lam.update_function_code, FunctionName=name, ZipFile=b"PK\x03\x04 nope"
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("Could not unzip uploaded file")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


def _files_named(root: Path, name: str) -> list[Path]:
    return [p for p in root.rglob(name)]


@pytest.mark.parametrize("entry", ["../evil.py", "/abs.py", "lib/../../evil.py"])
def test_zip_entries_escaping_the_package_are_400(
    server: LiveServer, lam: Any, unchanged: None, entry: str
) -> None:
    absolute_existed = Path("/abs.py").exists()
    status, code, _ = client_error(
        lam.create_function,
        **create_params(
            unique(), Code={"ZipFile": make_zip({"app.py": CODE, entry: "import os\n"})}
        ),
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    sandbox_root = server.data_dir.parent
    assert _files_named(sandbox_root, "evil.py") == []
    assert _files_named(sandbox_root, "abs.py") == []
    assert Path("/abs.py").exists() == absolute_existed


def test_zip_entry_escaping_on_update_code_is_400(server: LiveServer, lam: Any) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, _ = client_error(
        lam.update_function_code, FunctionName=name, ZipFile=make_zip({"../evil.py": "x"})
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before
    assert _files_named(server.data_dir.parent, "evil.py") == []


def _symlink_zip(target: str) -> bytes:
    import stat

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", CODE)
        link = zipfile.ZipInfo("secrets")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, target)
    return buffer.getvalue()


@pytest.mark.parametrize("target", ["../../../../../../etc/passwd", "/etc/passwd"])
def test_symlink_out_of_the_package_is_400(lam: Any, unchanged: None, target: str) -> None:
    status, code, message = client_error(
        lam.create_function, **create_params(unique(), Code={"ZipFile": _symlink_zip(target)})
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "outside the package" in message


def test_links_leading_out_through_other_links_are_400(
    server: LiveServer, lam: Any, unchanged: None
) -> None:
    import stat

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", CODE)
        for name, target in (("deep/er/p", "../.."), ("deep/er/s", "p/../../../../..")):
            link = zipfile.ZipInfo(name)
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, target)
        archive.writestr("deep/er/s/escaped-through-link.txt", "outside\n")
    status, code, message = client_error(
        lam.create_function, **create_params(unique(), Code={"ZipFile": buffer.getvalue()})
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "outside the package" in message
    assert _files_named(server.data_dir.parent, "escaped-through-link.txt") == []


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """One entry of 300 MB of zeros, deflated to a few hundred KB; built by streaming writes."""
    buffer = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", CODE)
        with archive.open("zeros.bin", "w", force_zip64=True) as entry:
            for _ in range(300):
                entry.write(chunk)
    data = buffer.getvalue()
    assert len(data) < 2 * 1024 * 1024
    return data


def test_zip_bomb_is_400(server: LiveServer, lam: Any, unchanged: None, zip_bomb: bytes) -> None:
    status, code, message = client_error(
        lam.create_function, **create_params(unique(), Code={"ZipFile": zip_bomb})
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("Unzipped size must be smaller than")
    assert str(250 * 1024 * 1024) in message


def test_zip_bomb_on_update_code_is_400(server: LiveServer, lam: Any, zip_bomb: bytes) -> None:
    name = unique()
    create(lam, name, CODE)
    current = config_of(lam, name)
    before = snapshot(server, lam)
    status, code, message = client_error(
        lam.update_function_code, FunctionName=name, ZipFile=zip_bomb
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("Unzipped size must be smaller than")
    assert config_of(lam, name) == current
    assert snapshot(server, lam) == before


def test_code_from_s3_or_image_is_refused(lam: Any, unchanged: None) -> None:
    status, code, _ = client_error(
        lam.create_function,
        **create_params(unique(), Code={"S3Bucket": "bucket", "S3Key": "key.zip"}),
    )
    assert (status, code) == (400, "InvalidParameterValueException")


# -- Errors: the request itself ------------------------------------------------------------------


def test_request_over_the_limit_is_413(server: LiveServer, lam: Any, unchanged: None) -> None:
    size = 71 * 1024 * 1024  # above the 70,167,211 bytes AWS accepts for CreateFunction
    chunk = b" " * (1024 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    status, headers, payload = raw_post(server, "/2015-03-31/functions", body(), length=size)
    assert status == 413
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "message" in json.loads(payload)


def test_request_over_the_limit_through_boto3_is_413(lam: Any, unchanged: None) -> None:
    # 53 MB of code: base64 in the JSON body makes it ~71 MB, over the limit.
    params = create_params(unique(), Code={"ZipFile": bytes(53 * 1024 * 1024)})
    status, code, _ = client_error(lam.create_function, **params)
    assert (status, code) == (413, "RequestEntityTooLargeException")


def test_zip_over_50_mb_is_413(lam: Any, unchanged: None) -> None:
    # Just over the 50 MB zipped limit, while the request itself (~67 MB) is under 70,167,211.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", CODE)
        archive.writestr("blob.bin", os.urandom(50 * 1024 * 1024 + 512 * 1024))
    status, code, _ = client_error(
        lam.create_function, **create_params(unique(), Code={"ZipFile": buffer.getvalue()})
    )
    assert (status, code) == (413, "RequestEntityTooLargeException")


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2, 3]", b"\xff\xfe"], ids=["syntax", "array", "bytes"]
)
def test_body_that_is_not_json_is_400(server: LiveServer, unchanged: None, body: bytes) -> None:
    status, headers, payload = raw_post(server, "/2015-03-31/functions", body)
    assert status == 400
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["x-amzn-errortype"] == "InvalidRequestContentException"
    document = json.loads(payload)
    assert document["Type"] == "User"
    assert document["message"]


def test_invalid_base64_zip_is_400(server: LiveServer, unchanged: None) -> None:
    body = json.dumps({**create_params(unique(), Code={"ZipFile": "***not base64***"})}).encode()
    status, headers, _ = raw_post(server, "/2015-03-31/functions", body)
    assert status == 400
    assert {k.lower(): v for k, v in headers.items()}[
        "x-amzn-errortype"
    ] == "InvalidRequestContentException"


# -- The AWS CLI ---------------------------------------------------------------------------------


def aws_cli(server: LiveServer, tmp_path: Path, *args: str) -> Any:
    aws = Path(sys.executable).parent / "aws"
    assert aws.exists(), "the AWS CLI is a dev dependency (pip install -e '.[dev]')"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_PAGER": "",
    }
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [str(aws), "--endpoint-url", server.endpoint, "--output", "json", "lambda", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_aws_cli_list_functions(server: LiveServer, lam: Any, tmp_path: Path) -> None:
    name = unique("cli")
    create(lam, name, CODE)
    listed = aws_cli(server, tmp_path, "list-functions")
    by_name = {f["FunctionName"]: f for f in listed["Functions"]}
    assert name in by_name
    assert by_name[name]["FunctionArn"] == arn(name)


def test_aws_cli_get_function_configuration(server: LiveServer, lam: Any, tmp_path: Path) -> None:
    name = unique("cli")
    created = create(lam, name, CODE, Timeout=7)
    got = aws_cli(server, tmp_path, "get-function-configuration", "--function-name", name)
    assert got["FunctionName"] == name
    assert got["Timeout"] == 7
    assert got["RevisionId"] == created["RevisionId"]
    assert got["CodeSha256"] == created["CodeSha256"]
