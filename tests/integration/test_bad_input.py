"""Bad input gets AWS's 4xx, never a 500 — and an ARN of elsewhere never acts on a local thing.

Each case here is one the fuzz (test_fuzz_operations.py) found answering 500, or one the
hardening issue names, checked for the answer AWS gives (boto3 with validation off, or raw HTTP
where boto3 cannot send it).
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest

from conftest import ROLE, LiveServer, make_zip
from invoking import deploy, unique
from server_gauges import rss_mb

ACCOUNT = "000000000000"
CODE = "def handler(event, context):\n    return {'ran': True}\n"


def refused(call: Callable[[], Any]) -> tuple[int, str, str]:
    """(status, error code, message) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def raw_get(server: LiveServer, target: str) -> tuple[int, bytes]:
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


# -- CreateFunction -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Runtime", "Handler"])
def test_a_zip_function_needs_runtime_and_handler(lam_raw: Any, missing: str) -> None:
    params: dict[str, Any] = {
        "FunctionName": unique(),
        "Role": ROLE,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": CODE})},
    }
    del params[missing]
    assert refused(lambda: lam_raw.create_function(**params)) == (
        400,
        "InvalidParameterValueException",
        "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
    )
    status, code, _ = refused(lambda: lam_raw.get_function(FunctionName=params["FunctionName"]))
    assert (status, code) == (404, "ResourceNotFoundException")  # nothing was created


# -- numbers past their type --------------------------------------------------------------


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30, -(2**63) - 1])
def test_layer_version_numbers_past_64_bits_are_validation_errors(
    lam_raw: Any, number: int
) -> None:
    layer = unique("layer")
    calls: list[Callable[[], Any]] = [
        lambda: lam_raw.get_layer_version(LayerName=layer, VersionNumber=number),
        lambda: lam_raw.delete_layer_version(LayerName=layer, VersionNumber=number),
        lambda: lam_raw.get_layer_version_policy(LayerName=layer, VersionNumber=number),
        lambda: lam_raw.add_layer_version_permission(
            LayerName=layer,
            VersionNumber=number,
            StatementId="s",
            Action="lambda:GetLayerVersion",
            Principal="*",
        ),
        lambda: lam_raw.remove_layer_version_permission(
            LayerName=layer, VersionNumber=number, StatementId="s"
        ),
    ]
    for call in calls:
        status, code, message = refused(call)
        assert (status, code) == (400, "ValidationException"), message
        assert f"Value '{number}' at 'versionNumber' failed to satisfy constraint" in message


def test_the_largest_layer_version_number_is_just_not_found(lam_raw: Any) -> None:
    status, code, _ = refused(
        lambda: lam_raw.get_layer_version(LayerName=unique("layer"), VersionNumber=2**63 - 1)
    )
    assert (status, code) == (404, "ResourceNotFoundException")


def test_layer_version_arns_past_64_bits_name_nothing(lam_raw: Any) -> None:
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{unique('layer')}:9223372036854775808"
    status, code, _ = refused(lambda: lam_raw.get_layer_version_by_arn(Arn=arn))
    assert (status, code) == (404, "ResourceNotFoundException")


def test_integers_in_bodies_must_fit_their_type(lam_raw: Any, server: LiveServer) -> None:
    name = deploy(lam_raw, CODE, prefix="range")
    status, code, message = refused(
        lambda: lam_raw.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=2**31
        )
    )
    assert (status, code) == (400, "ValidationException")
    assert "Member must have value less than or equal to 2147483647" in message
    logs = server.client("logs", validate=False)
    group = "/" + unique("range")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    status, code, message = refused(
        lambda: logs.get_log_events(logGroupName=group, logStreamName="s", startTime=2**63)
    )
    assert (status, code) == (400, "InvalidParameterException")
    assert "less than or equal to 9223372036854775807" in message
    # The largest long is a time like any other (FilterLogEvents adds 1 to an inclusive end).
    assert logs.filter_log_events(logGroupName=group, endTime=2**63 - 1)["events"] == []
    cloudwatch = server.client("cloudwatch", validate=False)
    status, code, _ = refused(
        lambda: cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=time.time() - 600,
            EndTime=time.time(),
            Period=2**31,
            Statistics=["Sum"],
        )
    )
    assert (status, code) == (400, "InvalidParameterValue")


@pytest.mark.parametrize("value", ["1_0", " 1", "%C2%B2", "%D9%A1", "9" * 5000, "-" + "9" * 30])
def test_integers_in_queries_are_plain_ascii_digits(server: LiveServer, value: str) -> None:
    status, body = raw_get(server, f"/2015-03-31/functions?MaxItems={value.replace(' ', '%20')}")
    assert status == 400, body
    assert b"maxItems" in body


def test_version_numbers_in_paths_past_int_parsing(server: LiveServer) -> None:
    status, body = raw_get(server, "/2018-10-31/layers/l/versions/" + "9" * 5000)
    assert status == 400, body[:200]
    assert b"less than or equal to 9223372036854775807" in body


# -- ARNs of other partitions, regions and accounts -----------------------------------------


@pytest.mark.parametrize(
    "template, message",
    [
        ("arn:aws-cn:lambda:us-east-1:000000000000:function:{}", None),
        ("arn:aws-us-gov:lambda:us-east-1:000000000000:function:{}", None),
        ("arn::lambda:us-east-1:000000000000:function:{}", None),
        (
            "arn:aws:lambda:eu-west-1:000000000000:function:{}",
            "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')",
        ),
        ("arn:aws:lambda:us-east-1:123456789012:function:{}", None),
        ("123456789012:function:{}", None),
    ],
)
def test_arns_of_elsewhere_never_act_on_a_local_function(
    lam_raw: Any, template: str, message: str | None
) -> None:
    name = deploy(lam_raw, CODE, prefix="elsewhere")
    arn = template.format(name)
    for call in (
        lambda: lam_raw.get_function(FunctionName=arn),
        lambda: lam_raw.invoke(FunctionName=arn, Payload=b"{}"),
        lambda: lam_raw.update_function_configuration(FunctionName=arn, Description="changed"),
        lambda: lam_raw.delete_function(FunctionName=arn),
    ):
        status, code, said = refused(call)
        assert (status, code) == (404, "ResourceNotFoundException"), said
        if message:
            assert said == message
    # Tags take full ARNs only (the model's pattern refuses the others first).
    status, code, _ = refused(lambda: lam_raw.list_tags(Resource=arn))
    assert (status, code) in {(404, "ResourceNotFoundException"), (400, "ValidationException")}
    config = lam_raw.get_function(FunctionName=name)["Configuration"]
    assert config["Description"] == ""  # untouched, and still there


def test_layer_and_destination_arns_of_another_partition(lam_raw: Any) -> None:
    name = deploy(lam_raw, CODE, prefix="partition")
    layer = unique("layer")
    version = lam_raw.publish_layer_version(
        LayerName=layer, Content={"ZipFile": make_zip({"python/x.py": "X = 1\n"})}
    )["Version"]
    foreign = f"arn:aws-cn:lambda:us-east-1:{ACCOUNT}:layer:{layer}:{version}"
    status, code, _ = refused(lambda: lam_raw.get_layer_version_by_arn(Arn=foreign))
    assert (status, code) == (404, "ResourceNotFoundException")
    status, code, _ = refused(
        lambda: lam_raw.update_function_configuration(FunctionName=name, Layers=[foreign])
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    destination = f"arn:aws-cn:lambda:us-east-1:{ACCOUNT}:function:{name}"
    status, code, _ = refused(
        lambda: lam_raw.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": destination}}
        )
    )
    assert (status, code) == (400, "InvalidParameterValueException")


def test_log_group_arns_of_elsewhere_name_nothing(server: LiveServer) -> None:
    logs = server.client("logs", validate=False)
    group = "/" + unique("elsewhere")
    logs.create_log_group(logGroupName=group)
    for arn in (
        f"arn:aws-cn:logs:us-east-1:{ACCOUNT}:log-group:{group}",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{group}",
        f"arn:aws:logs:us-east-1:123456789012:log-group:{group}",
    ):
        status, code, _ = refused(lambda arn=arn: logs.describe_log_streams(logGroupIdentifier=arn))
        assert (status, code) == (400, "ResourceNotFoundException")
    local = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}"
    assert logs.describe_log_streams(logGroupIdentifier=local)["logStreams"] == []


# -- JSON nulls -----------------------------------------------------------------------------


def test_null_members_are_absent_and_null_items_are_refused(
    lam_raw: Any, server: LiveServer
) -> None:
    logs = server.client("logs", validate=False)
    group = "/" + unique("nulls")
    logs.create_log_group(logGroupName=group)
    assert logs.filter_log_events(logGroupName=group, limit=None)["events"] == []
    assert logs.describe_log_streams(logGroupName=group, limit=None)["logStreams"] == []
    status, code, _ = refused(lambda: logs.describe_log_groups(logGroupIdentifiers=[None]))
    assert (status, code) == (400, "InvalidParameterException")
    name = deploy(lam_raw, CODE, prefix="nulls")
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    status, code, message = refused(lambda: lam_raw.tag_resource(Resource=arn, Tags={"k": None}))
    assert (status, code) == (400, "ValidationException")
    assert "Map value must not be null" in message
    cloudwatch = server.client("cloudwatch", validate=False)
    status, code, _ = refused(
        lambda: cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=time.time() - 600,
            EndTime=time.time(),
            Period=60,
            Statistics=[None],
        )
    )
    assert (status, code) == (400, "InvalidParameterValue")


# -- forged markers and tokens --------------------------------------------------------------


def marker(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_forged_markers_and_tokens_are_refused(lam_raw: Any, server: LiveServer) -> None:
    name = deploy(lam_raw, CODE, prefix="marker")
    for call in (
        lambda: lam_raw.list_functions(FunctionVersion="ALL", Marker=marker(f"{name}:{'9' * 20}")),
        lambda: lam_raw.list_functions(FunctionVersion="ALL", Marker=marker(f"{name}:\u00b2")),
        lambda: lam_raw.list_versions_by_function(FunctionName=name, Marker=marker("9" * 20)),
        lambda: lam_raw.list_layer_versions(LayerName=unique("layer"), Marker=marker("\u00b2")),
    ):
        status, code, message = refused(call)
        assert (status, code) == (400, "InvalidParameterValueException"), message
    logs = server.client("logs", validate=False)
    group = "/" + unique("token")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    status, code, _ = refused(
        lambda: logs.get_log_events(
            logGroupName=group, logStreamName="s", nextToken=f"f/{'9' * 56}/s"
        )
    )
    assert (status, code) == (400, "InvalidParameterException")


def test_code_urls_refuse_forged_expiries_and_signatures(server: LiveServer) -> None:
    sha = "0" * 64
    for query in (
        f"expires={'9' * 5000}&signature=x",
        "expires=99999999999&signature=%C3%A9",
        "expires=%C2%B2&signature=x",
    ):
        status, _ = raw_get(server, f"/_ember/code/{sha}.zip?{query}")
        assert status == 403


def test_a_body_that_is_broken_http_is_no_unhandled_error(lam_raw: Any, server: LiveServer) -> None:
    name = deploy(lam_raw, CODE, prefix="chunked")
    before = server.log().count("unhandled error")
    request = (
        f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    time.sleep(0.5)  # the app sees the disconnect after uvicorn answered
    assert server.log().count("unhandled error") == before


def test_function_versions_past_64_bits_are_just_not_found(lam_raw: Any) -> None:
    name = deploy(lam_raw, CODE, prefix="bigversion")
    huge = "9" * 30
    for call in (
        lambda: lam_raw.get_function(FunctionName=name, Qualifier=huge),
        lambda: lam_raw.get_function(FunctionName=f"{name}:{huge}"),
        lambda: lam_raw.delete_function(FunctionName=name, Qualifier=huge),
        lambda: lam_raw.invoke(FunctionName=name, Qualifier=huge, Payload=b"{}"),
    ):
        status, code, message = refused(call)
        assert (status, code) == (404, "ResourceNotFoundException"), message


def test_refused_uploads_leave_no_memory_behind(lam_raw: Any, server: LiveServer) -> None:
    """A refused upload's body is freed with its answer, not at the next full garbage collection
    (an error raised in a worker thread sat in a reference cycle with the request's frames: each
    refused 45 MB upload kept ~107 MB)."""
    junk = os.urandom(20 * 1024 * 1024)  # not a zip
    before = rss_mb(server)
    for _ in range(6):
        status, code, _ = refused(
            lambda: lam_raw.create_function(
                FunctionName=unique("junkzip"),
                Runtime="python3.12",
                Handler="app.handler",
                Role=ROLE,
                Code={"ZipFile": junk},
            )
        )
        assert (status, code) == (400, "InvalidParameterValueException")
    grown = rss_mb(server) - before
    assert grown < 60, f"the server kept {grown:.0f} MB after six refused 20 MB uploads"
