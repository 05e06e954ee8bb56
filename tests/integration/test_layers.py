"""Layers on a live `ember server`: the layer API with boto3 and the AWS CLI, and functions that
mount their layers read-only at /opt (python/ importable, bin/ on PATH, later layers on top)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import urllib.request
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, LiveServer, make_zip
from invoking import DEFAULT_RUNTIME, deploy, ok, unique

LIMIT = 262_144_000


def layer_zip(
    files: dict[str, str | bytes],
    executables: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100755 if name in executables else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)
    return buf.getvalue()


def publish(lam: Any, name: str, files: dict[str, str | bytes], **kwargs: Any) -> dict[str, Any]:
    executables = kwargs.pop("executables", ())
    links = kwargs.pop("links", None)
    return dict(
        lam.publish_layer_version(
            LayerName=name, Content={"ZipFile": layer_zip(files, executables, links)}, **kwargs
        )
    )


def error_of(call: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


# -- the layer API ---------------------------------------------------------------------------


def test_publish_get_download_and_version_numbers(lam: Any, server: LiveServer) -> None:
    name = unique("layer")
    data = layer_zip({"python/shared.py": "VALUE = 1\n"})
    published = lam.publish_layer_version(
        LayerName=name,
        Content={"ZipFile": data},
        Description="shared code",
        CompatibleRuntimes=["python3.11", "python3.12"],
        CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    layer_arn = f"arn:aws:lambda:us-east-1:000000000000:layer:{name}"
    assert published["LayerArn"] == layer_arn
    assert published["LayerVersionArn"] == layer_arn + ":1"
    assert published["Version"] == 1
    assert published["Description"] == "shared code"
    assert published["LicenseInfo"] == "MIT"
    assert published["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert published["CompatibleArchitectures"] == ["x86_64"]
    assert published["CreatedDate"].endswith("+0000") and "T" in published["CreatedDate"]
    content = published["Content"]
    assert content["CodeSize"] == len(data)
    assert content["CodeSha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    with urllib.request.urlopen(content["Location"], timeout=10) as r:
        assert r.read() == data

    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    by_arn = lam.get_layer_version_by_arn(Arn=layer_arn + ":1")
    by_layer_arn = lam.get_layer_version(LayerName=layer_arn, VersionNumber=1)
    for doc in (got, by_arn, by_layer_arn):
        assert doc["LayerVersionArn"] == layer_arn + ":1"
        assert doc["Content"]["CodeSha256"] == content["CodeSha256"]
        assert doc["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as r:
        assert r.read() == data

    # Numbers count per layer and are never reused, even after the newest is deleted.
    assert publish(lam, name, {"python/shared.py": "VALUE = 2\n"})["Version"] == 2
    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    assert publish(lam, name, {"python/shared.py": "VALUE = 3\n"})["Version"] == 3
    other = publish(lam, unique("layer"), {"python/x.py": ""})
    assert other["Version"] == 1


def test_layer_api_errors(lam: Any, lam_raw: Any) -> None:
    name = unique("layer")
    arn = f"arn:aws:lambda:us-east-1:000000000000:layer:{name}"
    missing = (404, "ResourceNotFoundException", "The resource you requested does not exist.")
    assert error_of(lam.get_layer_version, LayerName=name, VersionNumber=1) == missing
    assert error_of(lam.get_layer_version_by_arn, Arn=arn + ":1") == missing
    # Deleting a version that does not exist succeeds, as on Lambda.
    lam.delete_layer_version(LayerName=name, VersionNumber=7)
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []

    status, code, message = error_of(
        lam.publish_layer_version, LayerName=name, Content={"ZipFile": b"not a zip"}
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "unzip" in message
    status, code, _ = error_of(
        lam.publish_layer_version, LayerName=name, Content={"S3Bucket": "bucket", "S3Key": "k"}
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    status, code, _ = error_of(lam_raw.publish_layer_version, LayerName=name, Content={})
    assert (status, code) == (400, "InvalidParameterValueException")
    # The model's constraints, checked by the server (the raw client skips its own checks).
    status, code, message = error_of(
        lam_raw.publish_layer_version,
        LayerName=name,
        Content={"ZipFile": make_zip({"a": "b"})},
        CompatibleRuntimes=["cobol85"],
    )
    assert (status, code) == (400, "ValidationException")
    assert "compatibleRuntimes" in message or "enum" in message
    # Zip safety: '..' entries and links out of the layer are refused before anything is used.
    for bad in (
        make_zip({"../escape.py": "x"}),
        layer_zip({}, links={"python/etc": "../../../../etc"}),
    ):
        status, code, _ = error_of(
            lam.publish_layer_version, LayerName=name, Content={"ZipFile": bad}
        )
        assert (status, code) == (400, "InvalidParameterValueException")
    assert error_of(lam.get_layer_version, LayerName=name, VersionNumber=1) == missing


def test_list_layers_and_versions_with_filters_and_pages(lam: Any) -> None:
    prefix = unique("lst")
    first, second = prefix + "-a", prefix + "-b"
    publish(
        lam,
        first,
        {"a.txt": "1"},
        CompatibleRuntimes=["python3.11"],
        CompatibleArchitectures=["x86_64"],
    )
    publish(lam, first, {"a.txt": "2"}, CompatibleRuntimes=["python3.12"])
    publish(
        lam,
        first,
        {"a.txt": "3"},
        CompatibleRuntimes=["python3.11", "python3.12"],
        Description="3rd",
    )
    publish(lam, second, {"b.txt": "1"}, CompatibleRuntimes=["python3.12"])

    versions = lam.list_layer_versions(LayerName=first)["LayerVersions"]
    assert [v["Version"] for v in versions] == [3, 2, 1]  # newest first
    assert versions[0]["Description"] == "3rd"
    assert versions[0]["LayerVersionArn"].endswith(f":layer:{first}:3")
    assert "Content" not in versions[0]
    only_311 = lam.list_layer_versions(LayerName=first, CompatibleRuntime="python3.11")[
        "LayerVersions"
    ]
    assert [v["Version"] for v in only_311] == [3, 1]
    x86 = lam.list_layer_versions(LayerName=first, CompatibleArchitecture="x86_64")["LayerVersions"]
    assert [v["Version"] for v in x86] == [1]

    pages, marker = [], None
    while True:
        kwargs: dict[str, Any] = {"LayerName": first, "MaxItems": 1}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_layer_versions(**kwargs)
        pages.append([v["Version"] for v in page["LayerVersions"]])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == [[3], [2], [1]]
    paginated = [
        v["Version"]
        for page in lam.get_paginator("list_layer_versions").paginate(
            LayerName=first, PaginationConfig={"PageSize": 2}
        )
        for v in page["LayerVersions"]
    ]
    assert paginated == [3, 2, 1]

    def mine(**kwargs: Any) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for page in lam.get_paginator("list_layers").paginate(
            PaginationConfig={"PageSize": 1}, **kwargs
        ):
            for item in page["Layers"]:
                if item["LayerName"].startswith(prefix):
                    found[item["LayerName"]] = item
        return found

    everything = mine()
    assert sorted(everything) == [first, second]
    assert everything[first]["LatestMatchingVersion"]["Version"] == 3
    assert everything[first]["LayerArn"].endswith(f":layer:{first}")
    x86_layers = mine(CompatibleArchitecture="x86_64")
    assert (
        sorted(x86_layers) == [first] and x86_layers[first]["LatestMatchingVersion"]["Version"] == 1
    )

    lam.delete_layer_version(LayerName=first, VersionNumber=3)
    assert mine(CompatibleRuntime="python3.11")[first]["LatestMatchingVersion"]["Version"] == 1
    lam.delete_layer_version(LayerName=second, VersionNumber=1)
    assert second not in mine()


def test_layer_version_policy(lam: Any) -> None:
    name = unique("pol")
    version_arn = publish(lam, name, {"x.txt": "x"})["LayerVersionArn"]
    no_policy = (
        404,
        "ResourceNotFoundException",
        "No policy is associated with the given resource.",
    )
    assert error_of(lam.get_layer_version_policy, LayerName=name, VersionNumber=1) == no_policy

    added = lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="xaccount",
        Action="lambda:GetLayerVersion",
        Principal="111122223333",
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "xaccount",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "lambda:GetLayerVersion",
        "Resource": version_arn,
    }
    org = lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="org",
        Action="lambda:GetLayerVersion",
        Principal="*",
        OrganizationId="o-abcdefghij",
        RevisionId=added["RevisionId"],
    )
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"] != added["RevisionId"]
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17" and document["Id"] == "default"
    assert [s["Sid"] for s in document["Statement"]] == ["xaccount", "org"]
    assert document["Statement"][1]["Principal"] == "*"
    assert document["Statement"][1]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}
    }

    status, code, message = error_of(
        lam.add_layer_version_permission,
        LayerName=name,
        VersionNumber=1,
        StatementId="xaccount",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    assert (status, code) == (409, "ResourceConflictException")
    assert message.startswith("The statement id (xaccount) provided already exists.")
    status, code, _ = error_of(
        lam.add_layer_version_permission,
        LayerName=name,
        VersionNumber=1,
        StatementId="stale",
        Action="lambda:GetLayerVersion",
        Principal="*",
        RevisionId=added["RevisionId"],
    )
    assert (status, code) == (412, "PreconditionFailedException")
    assert error_of(
        lam.remove_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="nope"
    ) == (404, "ResourceNotFoundException", "Statement nope is not found in resource policy.")
    status, code, message = error_of(
        lam.add_layer_version_permission,
        LayerName=name,
        VersionNumber=9,
        StatementId="s",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    assert (status, code, message) == (
        404,
        "ResourceNotFoundException",
        f"Layer version {version_arn[:-2]}:9 does not exist.",
    )

    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="xaccount")
    remaining = json.loads(lam.get_layer_version_policy(LayerName=name, VersionNumber=1)["Policy"])
    assert [s["Sid"] for s in remaining["Statement"]] == ["org"]
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org")
    assert error_of(lam.get_layer_version_policy, LayerName=name, VersionNumber=1) == no_policy


def test_aws_cli_publishes_and_lists(server: LiveServer, tmp_path: Any) -> None:
    name = unique("cli")
    path = tmp_path / "layer.zip"
    path.write_bytes(layer_zip({"python/cli_mod.py": "X = 1\n"}))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = [
        os.path.join(os.path.dirname(os.sys.executable), "aws"),
        "--endpoint-url",
        server.endpoint,
        "--output",
        "json",
        "lambda",
    ]
    done = subprocess.run(
        [
            *aws,
            "publish-layer-version",
            "--layer-name",
            name,
            "--zip-file",
            f"fileb://{path}",
            "--compatible-runtimes",
            "python3.12",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["Version"] == 1
    listed = subprocess.run(
        [*aws, "list-layer-versions", "--layer-name", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [v["Version"] for v in json.loads(listed.stdout)["LayerVersions"]] == [1]


# -- functions with layers -------------------------------------------------------------------


LAYERED = """
import os, subprocess, sys

def handler(event, context):
    import shared
    out = {"value": shared.VALUE, "which": shared.__file__}
    try:
        import only_first
        out["only_first"] = only_first.NAME
    except ImportError:
        out["only_first"] = None
    try:
        open("/opt/python/new.txt", "w")
        out["writable"] = True
    except OSError:
        out["writable"] = False
    out["pyc"] = sorted(os.listdir("/opt/python/__pycache__")) if os.path.isdir("/opt/python/__pycache__") else []
    out["path"] = os.environ["PATH"]
    out["ld"] = os.environ["LD_LIBRARY_PATH"]
    out["sys_path"] = [p for p in sys.path if p.startswith("/opt")]
    if os.path.exists("/opt/bin/hello"):
        out["hello"] = subprocess.run(["hello", "there"], capture_output=True, text=True).stdout
    return out
"""


def test_handler_imports_layers_in_order_with_bin_on_path(lam: Any) -> None:
    base, top = unique("base"), unique("top")
    first = publish(
        lam,
        base,
        {
            "python/shared.py": "VALUE = 'first'\n",
            "python/only_first.py": "NAME = 'only in the first layer'\n",
            "bin/hello": '#!/bin/sh\necho "hello from a layer: $1"\n',
        },
        executables=("bin/hello",),
    )
    second = publish(lam, top, {"python/shared.py": "VALUE = 'second'\n"})
    name = deploy(
        lam, LAYERED, prefix="layered", Layers=[first["LayerVersionArn"], second["LayerVersionArn"]]
    )

    config = lam.get_function_configuration(FunctionName=name)
    assert config["Layers"] == [
        {"Arn": first["LayerVersionArn"], "CodeSize": first["Content"]["CodeSize"]},
        {"Arn": second["LayerVersionArn"], "CodeSize": second["Content"]["CodeSize"]},
    ]
    result = ok(lam, name)
    assert result["value"] == "second"  # the later layer overlays the earlier one's file
    assert result["which"] == "/opt/python/shared.py"
    assert result["only_first"] == "only in the first layer"
    assert result["writable"] is False  # /opt is read-only
    assert any(f.startswith("shared.cpython-") for f in result["pyc"])  # precompiled at deploy
    assert "/opt/bin" in result["path"].split(":")
    assert "/opt/lib" in result["ld"].split(":")
    assert "/opt/python" in result["sys_path"]
    assert result["hello"] == "hello from a layer: there\n"

    # Reordering the layers changes which file wins.
    lam.update_function_configuration(
        FunctionName=name, Layers=[second["LayerVersionArn"], first["LayerVersionArn"]]
    )
    assert ok(lam, name)["value"] == "first"
    # Removing them all empties /opt.
    cleared = lam.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in cleared
    broken = lam.invoke(FunctionName=name, Payload=b"{}")
    assert broken.get("FunctionError") == "Unhandled"
    assert "shared" in json.loads(broken["Payload"].read())["errorMessage"]


def test_later_layer_replaces_an_earlier_link(lam: Any) -> None:
    """An earlier layer's symlink is replaced by a later layer's file, never written through."""
    first = publish(
        lam,
        unique("lnk"),
        {"data/mod.py": "WHO = 'via link'\n"},
        links={"python/mod.py": "../data/mod.py"},
    )
    second = publish(lam, unique("lnk"), {"python/mod.py": "WHO = 'second layer'\n"})
    code = "import mod\ndef handler(event, context):\n    return [mod.WHO, open('/opt/data/mod.py').read()]\n"
    only_first = deploy(lam, code, prefix="link1", Layers=[first["LayerVersionArn"]])
    assert ok(lam, only_first) == ["via link", "WHO = 'via link'\n"]
    both = deploy(
        lam, code, prefix="link2", Layers=[first["LayerVersionArn"], second["LayerVersionArn"]]
    )
    assert ok(lam, both) == ["second layer", "WHO = 'via link'\n"]


def test_deleted_layer_version_keeps_working_for_its_functions(lam: Any) -> None:
    layer = publish(lam, unique("del"), {"python/shared.py": "VALUE = 'kept'\n"})
    code = "import shared\ndef handler(event, context):\n    return shared.VALUE\n"
    name = deploy(lam, code, prefix="keeps", Layers=[layer["LayerVersionArn"]])
    lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=1)
    lam.update_function_configuration(FunctionName=name, Description="new instances")  # cold again
    assert ok(lam, name) == "kept"
    assert (
        lam.get_function(FunctionName=name)["Configuration"]["Layers"][0]["Arn"]
        == layer["LayerVersionArn"]
    )
    status, code_, message = error_of(
        lam.create_function,
        FunctionName=unique("late"),
        Runtime=DEFAULT_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        Layers=[layer["LayerVersionArn"]],
    )
    assert (status, code_, message) == (
        400,
        "InvalidParameterValueException",
        f"Layer version {layer['LayerVersionArn']} does not exist.",
    )


def test_function_layer_errors(lam: Any, lam_raw: Any) -> None:
    code = {"app.py": "def handler(event, context):\n    return 1\n"}
    layer_name = unique("err")
    v1 = publish(lam, layer_name, {"a.txt": "1"})["LayerVersionArn"]
    v2 = publish(lam, layer_name, {"a.txt": "2"})["LayerVersionArn"]
    missing = v1[:-2] + ":99"

    def refused(**kwargs: Any) -> tuple[int, str, str]:
        return error_of(
            lam_raw.create_function,
            FunctionName=unique("bad"),
            Runtime=DEFAULT_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip(code)},
            **kwargs,
        )

    assert refused(Layers=[missing]) == (
        400,
        "InvalidParameterValueException",
        f"Layer version {missing} does not exist.",
    )
    status, error, message = refused(Layers=[v1, v2])
    assert (status, error) == (400, "InvalidParameterValueException")
    assert message.startswith("Two different versions of the same layer are not allowed")
    others = [publish(lam, unique("many"), {"a.txt": str(i)})["LayerVersionArn"] for i in range(6)]
    status, error, message = refused(Layers=others)
    assert (status, error) == (400, "InvalidParameterValueException") and "5 layers" in message
    status, error, _ = refused(Layers=[v1.replace(":us-east-1:", ":eu-west-1:")])
    assert (status, error) == (400, "InvalidParameterValueException")
    status, error, _ = refused(Layers=[v1.replace(":000000000000:", ":111122223333:")])
    assert (status, error) == (400, "InvalidParameterValueException")
    status, error, _ = refused(Layers=["not-an-arn"])
    assert (status, error) == (400, "ValidationException")

    # An update that is refused changes nothing.
    name = deploy(lam, code, prefix="upd", Layers=[v1])
    status, error, _ = error_of(
        lam.update_function_configuration, FunctionName=name, Layers=[v1, missing]
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    assert [
        layer["Arn"] for layer in lam.get_function_configuration(FunctionName=name)["Layers"]
    ] == [v1]
    assert ok(lam, name) == 1


def test_code_plus_layers_over_250_mb_is_refused(lam: Any) -> None:
    big = layer_zip({"blob.bin": b"\0" * (LIMIT // 2 + 1)})  # compresses to a few hundred KB
    a = lam.publish_layer_version(LayerName=unique("big"), Content={"ZipFile": big})[
        "LayerVersionArn"
    ]
    b = lam.publish_layer_version(LayerName=unique("big"), Content={"ZipFile": big})[
        "LayerVersionArn"
    ]
    code = {"app.py": "def handler(event, context):\n    return 1\n"}
    status, error, message = error_of(
        lam.create_function,
        FunctionName=unique("huge"),
        Runtime=DEFAULT_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(code)},
        Layers=[a, b],
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    assert message.startswith(
        f"Function code combined with layers exceeds the maximum allowed size of {LIMIT} bytes."
        " The actual size is "
    )
    # Code that grows past the limit next to a layer is refused too.
    name = deploy(lam, code, prefix="grow", Layers=[a])
    status, error, message = error_of(
        lam.update_function_code,
        FunctionName=name,
        ZipFile=make_zip({**code, "more.bin": b"\0" * (LIMIT // 2)}),
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    assert message.startswith("Function code combined with layers exceeds")
    assert ok(lam, name) == 1


def test_site_packages_layout_on_the_oldest_runtime(lam: Any) -> None:
    """pip's layout (python/lib/pythonX.Y/site-packages) works, and the jail's /opt claim runs
    under Python 3.10 too."""
    layer = publish(
        lam,
        unique("site"),
        {
            "python/lib/python3.10/site-packages/sitepkg/__init__.py": "NAME = 'from site-packages'\n",
        },
        CompatibleRuntimes=["python3.10"],
    )
    code = "import sitepkg, sys\ndef handler(event, context):\n    return [sitepkg.NAME, sys.version_info[:2]]\n"
    name = deploy(lam, code, prefix="site", runtime="python3.10", Layers=[layer["LayerVersionArn"]])
    assert ok(lam, name) == ["from site-packages", [3, 10]]


def test_wire_documents_have_no_nulls(server: LiveServer, lam: Any) -> None:
    name = unique("raw")
    publish(lam, name, {"a.txt": "a"})
    for path in (
        f"/2018-10-31/layers/{name}/versions",
        "/2018-10-31/layers?MaxItems=50",
        f"/2018-10-31/layers/{name}/versions/1",
    ):
        with urllib.request.urlopen(server.endpoint + path, timeout=10) as r:
            body = r.read()
        assert b"null" not in body, body
    with urllib.request.urlopen(
        server.endpoint + f"/2018-10-31/layers/{name}/versions/1", timeout=10
    ) as r:
        doc = json.loads(r.read())
    assert doc["Description"] == "" and "LicenseInfo" not in doc and "CompatibleRuntimes" not in doc
