"""The CloudWatch Logs API on a live `ember server`, driven by boto3 and the AWS CLI.

A function that prints and logs is invoked; its lines are then read back the ways Lambda users
read them: DescribeLogGroups/Streams, GetLogEvents with tokens, FilterLogEvents with every kind
of filter pattern, `aws logs filter-log-events`, `aws logs tail`, retention and deletes, and
AWS's errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from logged import LoggedFunction, deploy_logged, wait_for, wait_for_report

from conftest import LiveServer
from invoking import invoke

STREAM_NAME = re.compile(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}")
VENV_BIN = Path(sys.executable).parent
AWS_V1 = VENV_BIN / "aws"
AWS_V2 = Path(os.environ.get("EMBER_AWS_CLI_V2", VENV_BIN / "aws2"))


@pytest.fixture(scope="module")
def logs(server: LiveServer) -> Any:
    return server.client("logs")


@pytest.fixture(scope="module")
def logged(server: LiveServer, logs: Any) -> LoggedFunction:
    return deploy_logged(server.client("lambda"), logs)


def client_error(call: Any, **params: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def unique_group() -> str:
    return f"/test/{uuid.uuid4().hex[:12]}"


def all_events(logs: Any, group: str, **params: Any) -> list[dict[str, Any]]:
    paginator = logs.get_paginator("filter_log_events")
    return [e for page in paginator.paginate(logGroupName=group, **params) for e in page["events"]]


def messages(logs: Any, group: str, pattern: str) -> list[str]:
    return [e["message"] for e in all_events(logs, group, filterPattern=pattern)]


# -- groups and streams ------------------------------------------------------------------------


def test_describe_log_groups(logs: Any, logged: LoggedFunction) -> None:
    found = logs.describe_log_groups(logGroupNamePrefix=logged.group)["logGroups"]
    assert len(found) == 1
    group = found[0]
    assert group["logGroupName"] == logged.group
    assert group["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{logged.group}:*"
    assert group["logGroupArn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{logged.group}"
    assert group["storedBytes"] > 0
    assert abs(group["creationTime"] - time.time() * 1000) < 600_000
    assert "retentionInDays" not in group
    everything = [
        g["logGroupName"]
        for p in logs.get_paginator("describe_log_groups").paginate()
        for g in p["logGroups"]
    ]
    assert logged.group in everything
    assert everything == sorted(everything)
    by_pattern = logs.describe_log_groups(logGroupNamePattern=logged.name.upper())["logGroups"]
    assert [g["logGroupName"] for g in by_pattern] == [logged.group]


def test_describe_log_groups_pages(logs: Any) -> None:
    prefix = unique_group()
    names = [f"{prefix}/{i:02d}" for i in range(7)]
    for name in names:
        logs.create_log_group(logGroupName=name)
    first = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=3)
    assert [g["logGroupName"] for g in first["logGroups"]] == names[:3]
    assert "nextToken" in first
    pages = logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=prefix, PaginationConfig={"PageSize": 3}
    )
    assert [g["logGroupName"] for p in pages for g in p["logGroups"]] == names
    status, code, _ = client_error(logs.describe_log_groups, nextToken="garbage")
    assert (status, code) == (400, "InvalidParameterException")


def test_describe_log_streams(logs: Any, logged: LoggedFunction) -> None:
    streams = logs.describe_log_streams(logGroupName=logged.group)["logStreams"]
    assert len(streams) == 1  # three warm invocations on one instance
    stream = streams[0]
    assert STREAM_NAME.fullmatch(stream["logStreamName"]), stream["logStreamName"]
    assert stream["logStreamName"].startswith(
        time.strftime("%Y/%m/%d/", time.gmtime(stream["creationTime"] / 1000))
    )
    assert (
        stream["firstEventTimestamp"] <= stream["lastEventTimestamp"] <= stream["lastIngestionTime"]
    )
    assert stream["arn"] == (
        f"arn:aws:logs:us-east-1:000000000000:log-group:{logged.group}:log-stream:{stream['logStreamName']}"
    )
    assert stream["storedBytes"] == 0  # deprecated for streams, always 0 on AWS
    by_arn = logs.describe_log_streams(
        logGroupIdentifier=f"arn:aws:logs:us-east-1:000000000000:log-group:{logged.group}"
    )["logStreams"]
    assert [s["logStreamName"] for s in by_arn] == [stream["logStreamName"]]


def test_describe_log_streams_order_and_pages(logs: Any) -> None:
    group = unique_group()
    logs.create_log_group(logGroupName=group)
    now = int(time.time() * 1000)
    names = ["c", "a", "d", "b", "e"]
    for i, name in enumerate(names):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=name,
            logEvents=[{"timestamp": now - 10_000 + i, "message": f"in {name}"}],
        )

    def listed(**params: Any) -> list[str]:
        pages = logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group, PaginationConfig={"PageSize": 2}, **params
        )
        return [s["logStreamName"] for p in pages for s in p["logStreams"]]

    assert listed() == ["a", "b", "c", "d", "e"]
    assert listed(descending=True) == ["e", "d", "c", "b", "a"]
    assert listed(orderBy="LastEventTime") == names
    assert listed(orderBy="LastEventTime", descending=True) == names[::-1]
    logs.create_log_stream(logGroupName=group, logStreamName="ab")
    assert listed(logStreamNamePrefix="a") == ["a", "ab"]
    status, code, message = client_error(
        logs.describe_log_streams,
        logGroupName=group,
        orderBy="LastEventTime",
        logStreamNamePrefix="a",
    )
    assert (status, code) == (400, "InvalidParameterException")
    assert "LastEventTime" in message


# -- GetLogEvents ------------------------------------------------------------------------------


def test_get_log_events_of_a_function(logs: Any, logged: LoggedFunction) -> None:
    stream = logs.describe_log_streams(logGroupName=logged.group)["logStreams"][0]["logStreamName"]
    events = logs.get_log_events(
        logGroupName=logged.group, logStreamName=stream, startFromHead=True
    )["events"]
    text = [e["message"] for e in events]
    for request_id in logged.request_ids:
        assert f"START RequestId: {request_id} Version: $LATEST" in text
        assert f"END RequestId: {request_id}" in text
        assert any(t.startswith(f"REPORT RequestId: {request_id}\tDuration: ") for t in text)
    assert any(t.startswith("INIT_START Runtime Version: ") for t in text)
    assert "cold start: module loaded" in text
    for n in (1, 2, 3):
        assert f"hello {n} from print" in text
    assert any(t.startswith("[INFO]\t") and t.endswith("\tprocessing order 2") for t in text)
    assert any(t.startswith("[ERROR]\t") and "payment failed for order 3" in t for t in text)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(e["ingestionTime"] >= e["timestamp"] - 1000 for e in events)


def test_get_log_events_tokens(logs: Any) -> None:
    group = unique_group()
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now - 25_000 + i, "message": f"m{i:02d}"} for i in range(25)],
    )

    def get(**params: Any) -> dict[str, Any]:
        return dict(logs.get_log_events(logGroupName=group, logStreamName="s", **params))

    def text(page: dict[str, Any]) -> list[str]:
        return [e["message"] for e in page["events"]]

    # From the head, forward, page by page, until the forward token stops changing.
    page = get(startFromHead=True, limit=10)
    assert text(page) == [f"m{i:02d}" for i in range(10)]
    assert re.fullmatch(r"f/\d{56}/s", page["nextForwardToken"])
    assert re.fullmatch(r"b/\d{56}/s", page["nextBackwardToken"])
    seen = text(page)
    token = page["nextForwardToken"]
    while True:
        page = get(nextToken=token, limit=10)
        if not page["events"]:
            assert page["nextForwardToken"] == token  # AWS: the same token at the end
            break
        seen += text(page)
        token = page["nextForwardToken"]
    assert seen == [f"m{i:02d}" for i in range(25)]

    # New events are picked up with the last forward token.
    logs.put_log_events(
        logGroupName=group, logStreamName="s", logEvents=[{"timestamp": now, "message": "late"}]
    )
    page = get(nextToken=token)
    assert text(page) == ["late"]
    assert page["nextForwardToken"] != token

    # By default: the newest events; backward tokens go toward the head.
    page = get(limit=10)
    assert text(page) == [f"m{i:02d}" for i in range(16, 25)] + ["late"]
    back = get(nextToken=page["nextBackwardToken"], limit=10)
    assert text(back) == [f"m{i:02d}" for i in range(6, 16)]
    back = get(nextToken=back["nextBackwardToken"], limit=10)
    assert text(back) == [f"m{i:02d}" for i in range(6)]
    end = get(nextToken=back["nextBackwardToken"], limit=10)
    assert text(end) == [] and end["nextBackwardToken"] == back["nextBackwardToken"]
    # ... and the forward token of a backward page reads on from its last event.
    assert text(get(nextToken=back["nextForwardToken"], limit=3)) == ["m06", "m07", "m08"]

    # A time window: startTime inclusive, endTime exclusive.
    window = get(startTime=now - 25_000 + 3, endTime=now - 25_000 + 6, startFromHead=True)
    assert text(window) == ["m03", "m04", "m05"]
    status, code, _ = client_error(
        logs.get_log_events, logGroupName=group, logStreamName="s", nextToken="f/123"
    )
    assert (status, code) == (400, "InvalidParameterException")


# -- FilterLogEvents -------------------------------------------------------------------------


def test_filter_log_events_fields(logs: Any, logged: LoggedFunction) -> None:
    response = logs.filter_log_events(logGroupName=logged.group, filterPattern="hello")
    events = response["events"]
    assert [e["message"] for e in events] == [
        "hello 1 from print",
        "hello 2 from print",
        "hello 3 from print",
    ]
    stream = logs.describe_log_streams(logGroupName=logged.group)["logStreams"][0]["logStreamName"]
    for event in events:
        assert event["logStreamName"] == stream
        assert isinstance(event["eventId"], str) and event["eventId"]
        assert event["ingestionTime"] >= event["timestamp"] - 1000
    assert len({e["eventId"] for e in events}) == 3
    assert response["searchedLogStreams"] == [{"logStreamName": stream, "searchedCompletely": True}]
    assert "nextToken" not in response


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("processing order", ["processing order 1", "processing order 2", "processing order 3"]),
        ('"payment failed"', ["payment failed for order 3"]),
        ("processing -healthcheck", None),  # checked below: no line has both
        ("?healthcheck ?payment", ["running low healthcheck", "payment failed for order 3"]),
        ("ERROR -INFO", ["payment failed for order 3", '"level": "ERROR"']),
    ],
)
def test_filter_log_events_terms(
    logs: Any, logged: LoggedFunction, pattern: str, expected: list[str] | None
) -> None:
    found = messages(logs, logged.group, pattern)
    if expected is None:
        assert len(found) == 3 and not any("healthcheck" in m for m in found)
        return
    assert len(found) == len(expected), found
    for line, fragment in zip(found, expected, strict=True):
        assert fragment in line


def test_filter_log_events_terms_are_case_sensitive(logs: Any, logged: LoggedFunction) -> None:
    assert messages(logs, logged.group, "HELLO") == []
    assert len(messages(logs, logged.group, "REPORT")) == 3
    assert len(messages(logs, logged.group, '"REPORT RequestId" -"Init Duration"')) == 2


@pytest.mark.parametrize(
    ("pattern", "orders"),
    [
        ('{ $.level = "ERROR" }', [3]),
        ('{ $.level != "ERROR" }', [1, 2]),
        ("{ $.latency > 100 }", [2, 3]),
        ("{ $.latency <= 200 }", [1, 2]),
        ("{ $.order.id = 2 }", [2]),
        ('{ $.tags[0] = "t3" }', [3]),
        ("{ $.level = * }", [1, 2, 3]),
        ('{ $.level = "IN*" }', [1, 2]),
        ("{ $.missing NOT EXISTS && $.latency >= 300 }", [3]),
        ('{ ($.level = "ERROR" && $.latency > 100) || $.order.id = 1 }', [1, 3]),
        ("{ $.latency > 1000 }", []),
    ],
)
def test_filter_log_events_json(
    logs: Any, logged: LoggedFunction, pattern: str, orders: list[int]
) -> None:
    found = [json.loads(m)["order"]["id"] for m in messages(logs, logged.group, pattern)]
    assert found == orders


def test_filter_log_events_time_streams_and_paging(logs: Any) -> None:
    group = unique_group()
    logs.create_log_group(logGroupName=group)
    now = int(time.time() * 1000)
    for stream in ("app/1", "app/2", "other"):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[
                {"timestamp": now - 60_000 + i * 1000, "message": f"{stream} event {i}"}
                for i in range(20)
            ],
        )
    everything = all_events(logs, group)
    assert len(everything) == 60
    assert [e["timestamp"] for e in everything] == sorted(
        e["timestamp"] for e in everything
    )  # interleaved
    page = logs.filter_log_events(logGroupName=group, limit=7)
    assert len(page["events"]) == 7 and "nextToken" in page
    paged = all_events(logs, group, PaginationConfig={"PageSize": 7})
    assert [e["eventId"] for e in paged] == [e["eventId"] for e in everything]
    # startTime and endTime are both inclusive here
    window = all_events(logs, group, startTime=now - 60_000 + 5000, endTime=now - 60_000 + 7000)
    assert len(window) == 9
    assert {e["logStreamName"] for e in all_events(logs, group, logStreamNamePrefix="app/")} == {
        "app/1",
        "app/2",
    }
    chosen = all_events(logs, group, logStreamNames=["other"], filterPattern='"event 1"')
    assert [e["message"] for e in chosen] == ["other event 1"] + [
        f"other event {i}" for i in range(10, 20)
    ]
    status, code, _ = client_error(
        logs.filter_log_events,
        logGroupName=group,
        logStreamNames=["other"],
        logStreamNamePrefix="app",
    )
    assert (status, code) == (400, "InvalidParameterException")
    status, code, _ = client_error(
        logs.filter_log_events, logGroupName=group, filterPattern="{ $.a > x }"
    )
    assert (status, code) == (400, "InvalidParameterException")
    status, code, _ = client_error(
        logs.filter_log_events, logGroupName=group, nextToken="not-a-token"
    )
    assert (status, code) == (400, "InvalidParameterException")


# -- writing, retention, deletes, errors ------------------------------------------------------


def test_put_log_events_rejections(logs: Any) -> None:
    group = unique_group()
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    day = 86_400_000
    response = logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": now - 15 * day, "message": "too old"},
            {"timestamp": now - 15 * day + 1, "message": "too old too"},
        ],
    )
    assert response["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    response = logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": now - 1, "message": "fine"},
            {"timestamp": now, "message": "fine too"},
            {"timestamp": now + 3 * 3600 * 1000, "message": "too new"},
        ],
    )
    assert response["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 2}
    logs.put_retention_policy(logGroupName=group, retentionInDays=1)
    response = logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": now - 2 * day, "message": "expired"},
            {"timestamp": now - 2 * day + 1, "message": "expired too"},
        ],
    )
    assert response["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 1}
    assert [e["message"] for e in all_events(logs, group)] == ["fine", "fine too"]
    status, code, message = client_error(
        logs.put_log_events,
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": now - 2 * day, "message": "a"},
            {"timestamp": now, "message": "b"},
        ],
    )
    assert (status, code) == (400, "InvalidParameterException") and "24 hours" in message
    status, code, _ = client_error(
        logs.put_log_events,
        logGroupName=group,
        logStreamName="nope",
        logEvents=[{"timestamp": now, "message": "x"}],
    )
    assert (status, code) == (400, "ResourceNotFoundException")


def test_create_twice_is_resource_already_exists(logs: Any) -> None:
    group = unique_group()
    logs.create_log_group(logGroupName=group)
    assert client_error(logs.create_log_group, logGroupName=group)[:2] == (
        400,
        "ResourceAlreadyExistsException",
    )
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    assert client_error(logs.create_log_stream, logGroupName=group, logStreamName="s")[:2] == (
        400,
        "ResourceAlreadyExistsException",
    )
    assert client_error(logs.create_log_stream, logGroupName=unique_group(), logStreamName="s")[
        :2
    ] == (400, "ResourceNotFoundException")


def test_retention_policy(logs: Any, logged: LoggedFunction) -> None:
    logs.put_retention_policy(logGroupName=logged.group, retentionInDays=14)
    group = logs.describe_log_groups(logGroupNamePrefix=logged.group)["logGroups"][0]
    assert group["retentionInDays"] == 14
    status, code, message = client_error(
        logs.put_retention_policy, logGroupName=logged.group, retentionInDays=2
    )
    assert (status, code) == (400, "InvalidParameterException")
    assert "retentionInDays" in message and "3653" in message
    logs.delete_retention_policy(logGroupName=logged.group)
    group = logs.describe_log_groups(logGroupNamePrefix=logged.group)["logGroups"][0]
    assert "retentionInDays" not in group
    # Recent events are untouched by a retention policy.
    assert len(all_events(logs, logged.group, filterPattern="REPORT")) == 3


def test_delete_stream_and_group(server: LiveServer, logs: Any) -> None:
    lam = server.client("lambda")
    function = deploy_logged(lam, logs, prefix="logs-del")
    stream = logs.describe_log_streams(logGroupName=function.group)["logStreams"][0][
        "logStreamName"
    ]
    logs.delete_log_stream(logGroupName=function.group, logStreamName=stream)
    assert logs.describe_log_streams(logGroupName=function.group)["logStreams"] == []
    assert all_events(logs, function.group) == []
    assert client_error(logs.delete_log_stream, logGroupName=function.group, logStreamName=stream)[
        :2
    ] == (400, "ResourceNotFoundException")
    assert client_error(logs.get_log_events, logGroupName=function.group, logStreamName=stream)[
        :2
    ] == (400, "ResourceNotFoundException")
    logs.delete_log_group(logGroupName=function.group)
    assert logs.describe_log_groups(logGroupNamePrefix=function.group)["logGroups"] == []
    assert client_error(logs.delete_log_group, logGroupName=function.group)[:2] == (
        400,
        "ResourceNotFoundException",
    )
    # As on AWS, the next invocation creates the group again.
    result = invoke(lam, function.name, {"n": 9})
    wait_for_report(logs, function.group, result.request_id)
    assert [e["message"] for e in all_events(logs, function.group, filterPattern="hello")] == [
        "hello 9 from print"
    ]


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("describe_log_streams", {}),
        ("get_log_events", {"logStreamName": "s"}),
        ("filter_log_events", {}),
        ("delete_log_group", {}),
        ("delete_log_stream", {"logStreamName": "s"}),
        ("put_retention_policy", {"retentionInDays": 7}),
        ("delete_retention_policy", {}),
        ("put_log_events", {"logStreamName": "s", "logEvents": [{"timestamp": 1, "message": "x"}]}),
    ],
)
def test_unknown_group_is_resource_not_found(
    logs: Any, operation: str, params: dict[str, Any]
) -> None:
    status, code, message = client_error(
        getattr(logs, operation), logGroupName="/no/such/group", **params
    )
    assert (status, code) == (400, "ResourceNotFoundException")
    assert message == "The specified log group does not exist."


def test_model_violations_are_invalid_parameter(server: LiveServer) -> None:
    raw = server.client("logs", validate=False)
    status, code, message = client_error(raw.filter_log_events, logGroupName="/x", limit=0)
    assert (status, code) == (400, "InvalidParameterException")
    assert message == (
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    status, code, _ = client_error(raw.describe_log_groups, logGroupNamePrefix="bad name!")
    assert (status, code) == (400, "InvalidParameterException")


def _raw(
    server: LiveServer, target: str | None, body: bytes
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/logs/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    if target:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(
        server.endpoint + "/", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_json_1_1_wire_format(server: LiveServer) -> None:
    status, headers, body = _raw(
        server, "Logs_20140328.DescribeLogStreams", b'{"logGroupName": "/nope"}'
    )
    assert status == 400
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert body == {
        "__type": "ResourceNotFoundException",
        "message": "The specified log group does not exist.",
    }
    status, _, body = _raw(server, "Logs_20140328.NoSuchThing", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = _raw(server, None, b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = _raw(server, "Logs_20140328.DescribeLogGroups", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, headers, body = _raw(server, "Logs_20140328.DescribeLogGroups", b"")
    assert (
        status == 200
        and "logGroups" in body
        and headers["content-type"] == "application/x-amz-json-1.1"
    )


# -- the AWS CLI -------------------------------------------------------------------------------


def _aws(
    binary: Path, server: LiveServer, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
        "AWS_CONFIG_FILE": "/dev/null",
    }
    return subprocess.run(
        [str(binary), "--endpoint-url", server.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _need_v2() -> Path:
    if not (AWS_V2.exists() and os.access(AWS_V2, os.X_OK)):
        pytest.skip(
            "AWS CLI v2 not installed (scripts/install-aws-cli-v2 puts it at .venv/bin/aws2)"
        )
    return AWS_V2


def test_aws_cli_filter_log_events(server: LiveServer, logged: LoggedFunction) -> None:
    done = _aws(
        AWS_V1,
        server,
        "logs",
        "filter-log-events",
        "--log-group-name",
        logged.group,
        "--filter-pattern",
        '{ $.level = "ERROR" }',
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert [json.loads(e["message"])["order"]["id"] for e in events] == [3]
    done = _aws(
        AWS_V1,
        server,
        "logs",
        "filter-log-events",
        "--log-group-name",
        logged.group,
        "--filter-pattern",
        "REPORT",
        "--query",
        "events[].message",
        "--output",
        "text",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("REPORT RequestId:") == 3
    done = _aws(AWS_V1, server, "logs", "filter-log-events", "--log-group-name", "/no/such/group")
    assert done.returncode != 0 and "ResourceNotFoundException" in done.stderr


def test_aws_cli_v2_filter_log_events(server: LiveServer, logged: LoggedFunction) -> None:
    aws2 = _need_v2()
    done = _aws(
        aws2,
        server,
        "logs",
        "filter-log-events",
        "--log-group-name",
        logged.group,
        "--filter-pattern",
        "?healthcheck ?payment",
        "--query",
        "events[].message",
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert len(found) == 2 and "healthcheck" in found[0] and "payment failed" in found[1]


def test_aws_logs_tail(server: LiveServer, logged: LoggedFunction) -> None:
    aws2 = _need_v2()
    done = _aws(aws2, server, "logs", "tail", logged.group, "--since", "1h")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for request_id in logged.request_ids:
        assert any(f"REPORT RequestId: {request_id}" in line for line in lines)
    assert any("hello 2 from print" in line for line in lines)
    stream = STREAM_NAME.search(lines[0])
    assert stream is not None  # the detailed format: time, stream, message
    done = _aws(
        aws2,
        server,
        "logs",
        "tail",
        logged.group,
        "--since",
        "1h",
        "--format",
        "short",
        "--filter-pattern",
        '"payment failed"',
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "payment failed for order 3" in done.stdout


def test_aws_logs_tail_follow(server: LiveServer, logs: Any) -> None:
    aws2 = _need_v2()
    lam = server.client("lambda")
    function = deploy_logged(lam, logs, prefix="logs-follow")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
        "AWS_CONFIG_FILE": "/dev/null",
    }
    process = subprocess.Popen(
        [
            str(aws2),
            "--endpoint-url",
            server.endpoint,
            "logs",
            "tail",
            function.group,
            "--follow",
            "--since",
            "1h",
            "--format",
            "short",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: any(function.request_ids[-1] in line and "REPORT" in line for line in lines),
            timeout=20,
            what="the existing lines",
        )
        result = invoke(lam, function.name, {"n": 42})
        wait_for(
            lambda: any(f"REPORT RequestId: {result.request_id}" in line for line in lines),
            timeout=20,
            what="the new invocation's REPORT in `aws logs tail --follow`",
        )
        assert any("hello 42 from print" in line for line in lines)
        # Each line once, even though --follow polls again from the newest timestamp.
        assert sum(f"START RequestId: {result.request_id}" in line for line in lines) == 1
        assert sum(f"START RequestId: {function.request_ids[0]}" in line for line in lines) == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
