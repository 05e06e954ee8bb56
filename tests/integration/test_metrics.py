"""Metrics against a live server: Prometheus `/metrics`, CloudWatch GetMetricStatistics and
GetMetricData through boto3 and the AWS CLI (v1 and v2), and `ember metrics`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import LiveServer, free_port
from invoking import deploy, invoke

HANDLER = """
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("asked to fail")
    return "ok"
"""

BIN = Path(sys.executable).parent


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_calls(lam: Any, name: str, good: int, bad: int) -> None:
    for i in range(good + bad):
        result = invoke(lam, name, {"fail": i >= good})
        assert result.status == 200
        assert (result.function_error is not None) == (i >= good)


@pytest.fixture(scope="module")
def called(server: LiveServer) -> str:
    """A function invoked 5 times successfully and 2 times with a function error."""
    lam = server.client("lambda")
    name = deploy(lam, HANDLER, prefix="metrics")
    run_calls(lam, name, good=5, bad=2)
    return name


def test_prometheus_counts_invocations_by_outcome(server: LiveServer, called: str) -> None:
    samples = scrape(server)
    fn = {"function": called, "version": "$LATEST"}
    assert value(samples, "ember_invocations_total", **fn, outcome="success") == 5
    assert value(samples, "ember_invocations_total", **fn, outcome="error") == 2
    assert value(samples, "ember_invocations_total", **fn, outcome="throttle") == 0
    assert value(samples, "ember_errors_total", **fn) == 2
    assert value(samples, "ember_errors_by_type_total", **fn, error_type="ValueError") == 2
    assert value(samples, "ember_cold_starts_total", **fn) == 1
    assert value(samples, "ember_invocation_duration_seconds_count", **fn) == 7
    assert value(samples, "ember_invocation_duration_seconds_bucket", **fn, le="+Inf") == 7
    assert value(samples, "ember_init_duration_seconds_count", **fn) == 1
    assert value(samples, "ember_billed_milliseconds_total", **fn) >= 7
    # platform-wide figures are present
    assert value(samples, "ember_instances_created_total") >= 1
    assert value(samples, "ember_sandboxes_created_total") >= 1
    assert ("ember_sandbox_pool_blank", ()) in samples
    assert ("ember_instances_destroyed_total", ()) in samples
    assert ("ember_concurrent_executions", ()) in samples


def test_prometheus_counts_async_queue_and_destinations(server: LiveServer) -> None:
    lam = server.client("lambda")
    target = deploy(lam, HANDLER, prefix="metrics-dest")
    source = deploy(lam, HANDLER, prefix="metrics-src")
    arn = lam.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
    lam.put_function_event_invoke_config(
        FunctionName=source, DestinationConfig={"OnSuccess": {"Destination": arn}}
    )
    for _ in range(3):
        assert (
            lam.invoke(FunctionName=source, InvocationType="Event", Payload=b"{}")["StatusCode"]
            == 202
        )
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(server)
        done = value(
            samples,
            "ember_invocations_total",
            function=target,
            version="$LATEST",
            outcome="success",
        )
        if done == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert done == 3
    assert (
        value(
            samples, "ember_destination_deliveries_total", function=source, destination="OnSuccess"
        )
        == 3
    )
    assert value(samples, "ember_async_events_total", function=source, result="succeeded") == 3
    assert value(samples, "ember_async_queue_depth", function=source) == 0


def window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=15), now + dt.timedelta(minutes=2)


def statistics(
    cw: Any, metric: str, dimensions: list[dict[str, str]], stats: list[str]
) -> list[dict[str, Any]]:
    start, end = window()
    answer = cw.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=dimensions,
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=stats,
    )
    assert answer["Label"] == metric
    points: list[dict[str, Any]] = answer["Datapoints"]
    return points


def total(points: list[dict[str, Any]], stat: str) -> float:
    return sum(p[stat] for p in points)


def test_get_metric_statistics_with_boto3(server: LiveServer, called: str) -> None:
    cw = server.client("cloudwatch")
    by_name = [{"Name": "FunctionName", "Value": called}]
    invocations = statistics(cw, "Invocations", by_name, ["Sum", "SampleCount"])
    assert total(invocations, "Sum") == 7
    assert total(invocations, "SampleCount") == 7
    assert all(p["Unit"] == "Count" for p in invocations)
    errors = statistics(cw, "Errors", by_name, ["Sum", "SampleCount"])
    assert total(errors, "Sum") == 2 and total(errors, "SampleCount") == 7
    duration = statistics(cw, "Duration", by_name, ["SampleCount", "Minimum", "Maximum", "Average"])
    assert total(duration, "SampleCount") == 7
    assert all(0 <= p["Minimum"] <= p["Average"] <= p["Maximum"] for p in duration)
    assert all(p["Unit"] == "Milliseconds" for p in duration)
    assert total(statistics(cw, "Throttles", by_name, ["Sum"]), "Sum") == 0
    concurrency = statistics(cw, "ConcurrentExecutions", by_name, ["Maximum"])
    assert concurrency and max(p["Maximum"] for p in concurrency) == 1  # sequential calls
    for dims in (
        [*by_name, {"Name": "ExecutedVersion", "Value": "$LATEST"}],
        [*by_name, {"Name": "Resource", "Value": called}],
    ):
        assert total(statistics(cw, "Invocations", dims, ["Sum"]), "Sum") == 7
    assert (
        statistics(
            cw, "Invocations", [*by_name, {"Name": "ExecutedVersion", "Value": "7"}], ["Sum"]
        )
        == []
    )
    assert statistics(cw, "Invocations", [{"Name": "FunctionName", "Value": "nope"}], ["Sum"]) == []
    # account-wide (no dimensions): at least this function's
    assert total(statistics(cw, "Invocations", [], ["Sum"]), "Sum") >= 7


def test_get_metric_data_with_boto3(server: LiveServer, called: str) -> None:
    cw = server.client("cloudwatch")
    start, end = window()
    metric = {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName", "Value": called}]}
    answer = cw.get_metric_data(
        StartTime=start,
        EndTime=end,
        MetricDataQueries=[
            {
                "Id": "inv",
                "MetricStat": {
                    "Metric": {**metric, "MetricName": "Invocations"},
                    "Period": 300,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "err",
                "MetricStat": {
                    "Metric": {**metric, "MetricName": "Errors"},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "Label": "failures",
            },
            {
                "Id": "hidden",
                "MetricStat": {
                    "Metric": {**metric, "MetricName": "Errors"},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
        ],
    )
    results = {r["Id"]: r for r in answer["MetricDataResults"]}
    assert set(results) == {"inv", "err"}
    assert sum(results["inv"]["Values"]) == 7 and results["inv"]["StatusCode"] == "Complete"
    assert sum(results["err"]["Values"]) == 2 and results["err"]["Label"] == "failures"
    stamps = results["err"]["Timestamps"]
    assert stamps == sorted(stamps, reverse=True)  # TimestampDescending by default


def test_cloudwatch_client_errors(server: LiveServer, called: str) -> None:
    cw = server.client("cloudwatch")
    start, end = window()
    args = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "StartTime": start,
        "EndTime": end,
        "Statistics": ["Sum"],
    }
    with pytest.raises(cw.exceptions.InvalidParameterValueException) as raised:
        cw.get_metric_statistics(**args, Period=90)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(cw.exceptions.InvalidParameterCombinationException):
        cw.get_metric_statistics(**{**args, "StartTime": end - dt.timedelta(days=2)}, Period=60)
    with pytest.raises(cw.exceptions.InvalidParameterValueException):
        cw.get_metric_statistics(**{**args, "StartTime": end, "EndTime": start}, Period=60)


def aws_cli(program: str, server: LiveServer, *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }
    done = subprocess.run(
        [program, "--endpoint-url", server.endpoint, "--output", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("cli", ["aws", "aws2"])
def test_aws_cli_get_metric_statistics_agrees(server: LiveServer, called: str, cli: str) -> None:
    program = shutil.which(cli, path=str(BIN)) or shutil.which(cli)
    if program is None:
        pytest.skip(f"{cli} is not installed")
    start, end = window()
    answer = aws_cli(
        program,
        server,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/Lambda",
        "--metric-name",
        "Invocations",
        "--dimensions",
        f"Name=FunctionName,Value={called}",
        "--start-time",
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--end-time",
        end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--period",
        "60",
        "--statistics",
        "Sum",
        "Average",
    )
    assert answer["Label"] == "Invocations"
    assert sum(p["Sum"] for p in answer["Datapoints"]) == 7
    errors = aws_cli(
        program,
        server,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/Lambda",
        "--metric-name",
        "Errors",
        "--dimensions",
        f"Name=FunctionName,Value={called}",
        "--start-time",
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--end-time",
        end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--period",
        "3600",
        "--statistics",
        "Sum",
    )
    assert sum(p["Sum"] for p in errors["Datapoints"]) == 2


def test_ember_metrics_prints_the_series(server: LiveServer, called: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember",
            "metrics",
            called,
            "--minutes",
            "15",
            "--json",
            "--endpoint",
            server.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 15
    assert sum(r["invocations"] for r in rows) == 7 and sum(r["errors"] for r in rows) == 2
    table = subprocess.run(
        [sys.executable, "-m", "ember", "metrics", called, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert table.returncode == 0, table.stderr
    assert "invocations" in table.stdout and called in table.stdout


def test_throttles_are_counted(tmp_path: Path) -> None:
    """Account concurrency 1: a second call while the first runs is throttled (429)."""
    live = LiveServer(tmp_path / "data", free_port(), extra_env={"EMBER_CONCURRENCY": "1"})
    live.start()
    try:
        lam = live.client("lambda")
        name = deploy(lam, HANDLER, prefix="throttled")
        invoke(lam, name)  # warm
        slow = threading.Thread(target=invoke, args=(lam, name, {"sleep": 2}))
        slow.start()
        throttled = 0
        deadline = time.monotonic() + 10
        other = live.client("lambda")
        while slow.is_alive() and time.monotonic() < deadline and not throttled:
            try:
                invoke(other, name)
            except other.exceptions.TooManyRequestsException:
                throttled += 1
        slow.join()
        assert throttled == 1
        samples = scrape(live)
        fn = {"function": name, "version": "$LATEST"}
        assert value(samples, "ember_throttles_total", **fn) == 1
        assert value(samples, "ember_invocations_total", **fn, outcome="throttle") == 1
        cw = live.client("cloudwatch")
        by_name = [{"Name": "FunctionName", "Value": name}]
        assert total(statistics(cw, "Throttles", by_name, ["Sum"]), "Sum") == 1
        invocations = total(statistics(cw, "Invocations", by_name, ["Sum"]), "Sum")
        assert invocations == value(samples, "ember_invocations_total", **fn, outcome="success")
    finally:
        live.stop()


def query_protocol_client(server: LiveServer, tmp_path: Path) -> Any:
    """A CloudWatch client that speaks the query protocol (form-encoded POST, XML answers), as
    botocore did before the `protocols` trait and as aws-sdk-go v1 still does."""
    import boto3
    import botocore.config
    import botocore.loaders
    import botocore.session

    model = botocore.loaders.create_loader().load_service_model("cloudwatch", "service-2")
    model["metadata"]["protocol"] = "query"
    model["metadata"]["protocols"] = ["query"]
    folder = tmp_path / "models" / "cloudwatch" / "2010-08-01"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    core = botocore.session.get_session()
    core.get_component("data_loader").search_paths.insert(0, str(tmp_path / "models"))
    session = boto3.Session(botocore_session=core)
    return session.client(
        "cloudwatch",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore.config.Config(retries={"max_attempts": 0}),
    )


def test_query_protocol_clients(server: LiveServer, called: str, tmp_path: Path) -> None:
    cw = query_protocol_client(server, tmp_path)
    assert cw.meta.service_model.resolved_protocol == "query"
    by_name = [{"Name": "FunctionName", "Value": called}]
    invocations = statistics(cw, "Invocations", by_name, ["Sum", "Average"])
    assert total(invocations, "Sum") == 7
    assert all(
        isinstance(p["Timestamp"], dt.datetime) and p["Unit"] == "Count" for p in invocations
    )
    start, end = window()
    answer = cw.get_metric_data(
        StartTime=start,
        EndTime=end,
        MetricDataQueries=[
            {
                "Id": "e",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": by_name,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
    )
    [result] = answer["MetricDataResults"]
    assert sum(result["Values"]) == 2 and len(result["Timestamps"]) == len(result["Values"])
    with pytest.raises(cw.exceptions.InvalidParameterValueException) as raised:
        cw.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=start,
            EndTime=end,
            Period=61,
            Statistics=["Sum"],
        )
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_concurrent_executions_maximum(server: LiveServer) -> None:
    """Three overlapping invocations (each sleeps 3 s) make a ConcurrentExecutions maximum of 3."""
    lam = server.client("lambda")
    name = deploy(lam, HANDLER, prefix="metrics-conc", Timeout=10)
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def call() -> None:
        client = server.client("lambda")
        barrier.wait()
        results.append(invoke(client, name, {"sleep": 3}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.function_error for r in results] == [None] * 3
    cw = server.client("cloudwatch")
    by_name = [{"Name": "FunctionName", "Value": name}]
    points = statistics(cw, "ConcurrentExecutions", by_name, ["Maximum"])
    assert max(p["Maximum"] for p in points) == 3
    account = statistics(cw, "ConcurrentExecutions", [], ["Maximum"])
    assert max(p["Maximum"] for p in account) >= 3
    samples = scrape(server)
    assert value(samples, "ember_cold_starts_total", function=name, version="$LATEST") == 3


def test_list_metrics(server: LiveServer, called: str) -> None:
    cw = server.client("cloudwatch")
    by_name = [{"Name": "FunctionName", "Value": called}]
    found = cw.list_metrics(Namespace="AWS/Lambda", Dimensions=by_name)["Metrics"]
    names = {m["MetricName"] for m in found if m["Dimensions"] == by_name}
    assert names == {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}
    resource = [{"Name": "FunctionName", "Value": called}, {"Name": "Resource", "Value": called}]
    assert {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Dimensions": resource} in found
    assert all(m["Dimensions"][0] == by_name[0] for m in found)
    only = cw.list_metrics(
        MetricName="Errors",
        Dimensions=[{"Name": "FunctionName", "Value": called}],
        RecentlyActive="PT3H",
    )["Metrics"]
    assert only and {m["MetricName"] for m in only} == {"Errors"}
    assert cw.list_metrics(Namespace="AWS/SQS")["Metrics"] == []
    paged = [
        m
        for page in cw.get_paginator("list_metrics").paginate(Namespace="AWS/Lambda")
        for m in page["Metrics"]
    ]
    assert {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": []} in paged
    program = shutil.which("aws", path=str(BIN))
    if program is not None:
        listed = aws_cli(
            program,
            server,
            "cloudwatch",
            "list-metrics",
            "--namespace",
            "AWS/Lambda",
            "--metric-name",
            "Invocations",
            "--dimensions",
            f"Name=FunctionName,Value={called}",
        )
        assert len(listed["Metrics"]) == 2  # FunctionName; FunctionName + Resource
