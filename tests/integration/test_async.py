"""Asynchronous invocation (InvocationType Event) on live `ember server`s, end to end.

Accepted events (202) are retried with back-off, expire after their maximum age, go to their
OnSuccess/OnFailure destinations as AWS's invocation records, wait out throttling instead of
being dropped, and one function's backlog does not starve another's. The event invoke config
API and DeadLetterConfig are checked as a boto3 user sees them.

The main server runs with EMBER_ASYNC_RETRY_BASE=0.2 (retry n waits n x 0.2 s instead of
n minutes). Nothing here sleeps for a fixed time: every wait polls with a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from asyncing import function_stats, log_messages, marked, queue_stats, report_ids, wait_for
from botocore.exceptions import ClientError

from conftest import ROLE, LiveServer, free_port, make_zip
from invoking import deploy, ok, unique

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

FAILS_TWICE = """
attempts = 0

def handler(event, context):
    global attempts
    attempts += 1
    print("ATTEMPT", attempts, context.aws_request_id)
    if attempts <= 2:
        raise RuntimeError("not yet: attempt %d" % attempts)
    return {"attempts": attempts}
"""

ALWAYS_FAILS = """
class OrderRejected(Exception):
    pass

def handler(event, context):
    print("ATTEMPT", context.aws_request_id)
    raise OrderRejected("order %s cannot be shipped" % event.get("order"))
"""

SUCCEEDS = """
def handler(event, context):
    return {"greeting": "Hello, " + event["name"], "count": len(event["items"])}
"""

# Destinations print what they receive; the tests read it back from the function's logs.
RECORDER = """
import json

def handler(event, context):
    print("RECORD " + json.dumps(event))
"""

MARKER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("RAN " + event["id"])
"""


def client_error(call: Any, **params: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def send_event(lam: Any, name: str, event: Any, **kwargs: Any) -> None:
    response = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event), **kwargs
    )
    assert response["StatusCode"] == 202
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert response["Payload"].read() == b""  # AWS sends no body with a 202


def records(server: LiveServer, destination: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in marked(server.data_dir, destination, "RECORD ")]


def wait_for_records(
    server: LiveServer, destination: str, count: int = 1, timeout: float = 30.0
) -> list[dict[str, Any]]:
    return wait_for(
        f"{count} invocation record(s) at {destination}",
        lambda: found if len(found := records(server, destination)) >= count else None,
        timeout,
    )


def started(tmp_path_factory: pytest.TempPathFactory, **env: str) -> LiveServer:
    live = LiveServer(tmp_path_factory.mktemp("ember-async") / "data", free_port(), env)
    live.start()
    return live


@pytest.fixture(scope="module")
def aserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = started(tmp_path_factory, EMBER_ASYNC_RETRY_BASE="0.2")
    yield live
    live.stop()


@pytest.fixture
def lam(aserver: LiveServer) -> Any:
    return aserver.client("lambda")


# -- expiry: started before every other test of this module, checked by the last one ------------
#
# MaximumEventAgeInSeconds cannot be below 60, so an event can only expire after a real minute.
# This server retries after 61 s (EMBER_ASYNC_RETRY_BASE=61): the first attempt fails at once,
# the retry finds the event older than its 60 s maximum age and sends it to OnFailure with
# condition EventAgeExceeded. Meanwhile the rest of the module runs.


@dataclass
class Expiring:
    server: LiveServer
    function: str
    destination: str
    event: dict[str, Any]
    sent_at: float
    blocked: str  # a function with reserved concurrency 0: its event can never start
    blocked_destination: str
    blocked_event: dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Expiring]:
    live = started(tmp_path_factory, EMBER_ASYNC_RETRY_BASE="61")
    try:
        lam = live.client("lambda")
        destination = deploy(lam, RECORDER, "expired-dest")
        function = deploy(lam, ALWAYS_FAILS, "expiring")
        lam.put_function_event_invoke_config(
            FunctionName=function,
            MaximumEventAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": ACCOUNT_ARN + destination}},
        )
        event = {"order": "too-late", "id": str(uuid.uuid4())}
        sent_at = time.monotonic()  # before the send: the event's age starts at its acceptance
        send_event(lam, function, event)
        blocked_destination = deploy(lam, RECORDER, "blocked-dest")
        blocked = deploy(lam, ALWAYS_FAILS, "blocked")
        lam.put_function_concurrency(FunctionName=blocked, ReservedConcurrentExecutions=0)
        lam.put_function_event_invoke_config(
            FunctionName=blocked,
            MaximumEventAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": ACCOUNT_ARN + blocked_destination}},
        )
        blocked_event = {"order": "never-started", "id": str(uuid.uuid4())}
        send_event(lam, blocked, blocked_event)
        yield Expiring(
            live, function, destination, event, sent_at, blocked, blocked_destination, blocked_event
        )
    finally:
        live.stop()


# -- retries ------------------------------------------------------------------------------------


def test_event_is_retried_until_it_succeeds(lam: Any, aserver: LiveServer) -> None:
    name = deploy(lam, FAILS_TWICE, "fails-twice")
    send_event(lam, name, {"order": 1})

    stats = wait_for(
        "the event to succeed",
        lambda: s if (s := function_stats(aserver, name))["succeeded"] else None,
    )
    assert stats["retries"] == 2
    assert stats["failures"] == 0 and stats["expired"] == 0
    assert stats["queued"] == 0 and stats["in_flight"] == 0

    messages = log_messages(aserver.data_dir, name)
    attempts = [m for m in messages if m.startswith("ATTEMPT ")]
    assert [a.split()[1] for a in attempts] == ["1", "2", "3"], messages
    ids = report_ids(messages)
    assert len(ids) == 3, messages
    assert len(set(ids)) == 1, f"every attempt of one event shares its RequestId: {ids}"
    assert {a.split()[2] for a in attempts} == set(ids)  # context.aws_request_id too
    assert sum("[ERROR] RuntimeError: not yet" in m for m in messages) == 2

    # The same figures through the CLI.
    out = subprocess.run(
        [sys.executable, "-m", "ember", "queue", "--json", "--endpoint", aserver.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    row = json.loads(out.stdout)[name]
    assert row["succeeded"] == 1 and row["retries"] == 2 and row["failures"] == 0
    table = subprocess.run(
        [sys.executable, "-m", "ember", "queue", "--endpoint", aserver.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert name in table.stdout  # piped: laid out wide, nothing shortened
    for header in (
        "function",
        "queued",
        "oldest",
        "in-flight",
        "succeeded",
        "retries",
        "failed",
        "expired",
    ):
        assert header in table.stdout


# -- destinations -------------------------------------------------------------------------------


def test_retries_exhausted_go_to_the_on_failure_destination(lam: Any, aserver: LiveServer) -> None:
    destination = deploy(lam, RECORDER, "on-failure")
    name = deploy(lam, ALWAYS_FAILS, "always-fails")
    config = lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": ACCOUNT_ARN + destination}},
    )
    assert config["MaximumRetryAttempts"] == 1
    event = {"order": 42, "lines": [{"sku": "A-1", "qty": 2}], "note": "naïve ✓"}
    send_event(lam, name, event)

    [record] = wait_for_records(aserver, destination)
    assert record["version"] == "1.0"
    assert TIMESTAMP.match(record["timestamp"]), record["timestamp"]
    context = record["requestContext"]
    messages = log_messages(aserver.data_dir, name)
    ids = report_ids(messages)
    assert len(ids) == 2 and len(set(ids)) == 1, messages  # one try and one retry
    assert context["requestId"] == ids[0]
    assert context["functionArn"] == f"{ACCOUNT_ARN}{name}:$LATEST"
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 2
    assert record["requestPayload"] == event
    assert record["responseContext"]["statusCode"] == 200
    assert record["responseContext"]["executedVersion"] == "$LATEST"
    assert record["responseContext"]["functionError"] == "Unhandled"
    response = record["responsePayload"]
    assert response["errorType"] == "OrderRejected"
    assert response["errorMessage"] == "order 42 cannot be shipped"

    stats = function_stats(aserver, name)
    assert stats["failures"] == 1 and stats["retries"] == 1 and stats["succeeded"] == 0
    assert stats["queued"] == 0
    # The destination's delivery is itself an asynchronous invocation that succeeded.
    wait_for(
        "the destination's delivery to be counted",
        lambda: function_stats(aserver, destination)["succeeded"] == 1,
    )


def test_success_goes_to_the_on_success_destination(lam: Any, aserver: LiveServer) -> None:
    destination = deploy(lam, RECORDER, "on-success")
    name = deploy(lam, SUCCEEDS, "succeeds")
    lam.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": ACCOUNT_ARN + destination}},
    )
    event = {"name": "Sally", "items": [1, 2, 3]}
    send_event(lam, name, event)

    [record] = wait_for_records(aserver, destination)
    assert record["version"] == "1.0"
    assert TIMESTAMP.match(record["timestamp"])
    context = record["requestContext"]
    assert context["condition"] == "Success"
    assert context["approximateInvokeCount"] == 1
    assert context["functionArn"] == f"{ACCOUNT_ARN}{name}:$LATEST"
    assert context["requestId"] == report_ids(log_messages(aserver.data_dir, name))[0]
    assert record["requestPayload"] == event
    assert record["responseContext"]["statusCode"] == 200
    assert record["responseContext"]["executedVersion"] == "$LATEST"
    assert "functionError" not in record["responseContext"]
    assert record["responsePayload"] == {"greeting": "Hello, Sally", "count": 3}


def test_timeouts_and_runtime_exits_are_failed_attempts_too(lam: Any, aserver: LiveServer) -> None:
    destination = deploy(lam, RECORDER, "crash-dest")
    sleeper = deploy(
        lam,
        "import time\n\ndef handler(event, context):\n    time.sleep(5)\n",
        "times-out",
        Timeout=1,
    )
    exits = deploy(lam, "import os\n\ndef handler(event, context):\n    os._exit(3)\n", "exits")
    for name in (sleeper, exits):
        lam.put_function_event_invoke_config(
            FunctionName=name,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": ACCOUNT_ARN + destination}},
        )
        send_event(lam, name, {"kind": name})
    found = wait_for_records(aserver, destination, 2)
    by_function = {r["requestContext"]["functionArn"].split(":")[-2]: r for r in found}
    assert set(by_function) == {sleeper, exits}
    for name, record in by_function.items():
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 2
        assert record["requestPayload"] == {"kind": name}
        assert record["responseContext"]["functionError"] == "Unhandled"
        assert len(set(report_ids(log_messages(aserver.data_dir, name)))) == 1
    assert by_function[sleeper]["responsePayload"]["errorType"] == "Sandbox.Timedout"
    assert "timed out after 1.00 seconds" in by_function[sleeper]["responsePayload"]["errorMessage"]
    assert by_function[exits]["responsePayload"]["errorType"] == "Runtime.ExitError"


def test_on_failure_is_not_used_on_success_and_on_success_not_on_failure(
    lam: Any, aserver: LiveServer
) -> None:
    destination = deploy(lam, RECORDER, "both")
    good = deploy(lam, SUCCEEDS, "good")
    bad = deploy(lam, ALWAYS_FAILS, "bad")
    both = {
        "OnSuccess": {"Destination": ACCOUNT_ARN + destination},
        "OnFailure": {"Destination": ACCOUNT_ARN + destination},
    }
    for name in (good, bad):
        lam.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=0, DestinationConfig=both
        )
    send_event(lam, good, {"name": "a", "items": []})
    send_event(lam, bad, {"order": 7})
    found = wait_for_records(aserver, destination, 2)
    by_function = {
        r["requestContext"]["functionArn"]: r["requestContext"]["condition"] for r in found
    }
    assert by_function == {
        f"{ACCOUNT_ARN}{good}:$LATEST": "Success",
        f"{ACCOUNT_ARN}{bad}:$LATEST": "RetriesExhausted",
    }
    assert len(report_ids(log_messages(aserver.data_dir, bad))) == 1  # MaximumRetryAttempts=0


# -- what is refused ----------------------------------------------------------------------------


def test_event_payload_over_1_mb_is_413(lam: Any, aserver: LiveServer) -> None:
    name = deploy(lam, MARKER, "big")
    limit = 1024 * 1024

    def payload(size: int) -> bytes:
        return b'{"id": "big", "pad": "' + b"x" * (size - 24) + b'"}'

    assert len(payload(limit + 1)) == limit + 1
    status, code = client_error(
        lam.invoke, FunctionName=name, InvocationType="Event", Payload=payload(limit + 1)
    )
    assert (status, code) == (413, "RequestEntityTooLargeException")
    # Exactly 1 MB is accepted and runs.
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload(limit))
    assert response["StatusCode"] == 202
    wait_for("the 1 MB event to run", lambda: marked(aserver.data_dir, name, "RAN "))
    assert function_stats(aserver, name)["succeeded"] == 1


def test_event_202_has_an_empty_body(lam: Any) -> None:
    name = deploy(lam, MARKER, "empty-body")
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"id": "x"}')
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""  # AWS sends no body with a 202


def test_event_to_a_missing_function_is_404(lam: Any) -> None:
    status, code = client_error(
        lam.invoke, FunctionName=unique("missing"), InvocationType="Event", Payload=b"{}"
    )
    assert (status, code) == (404, "ResourceNotFoundException")


def test_event_with_invalid_json_is_400(lam: Any) -> None:
    name = deploy(lam, MARKER, "badjson")
    status, code = client_error(
        lam.invoke, FunctionName=name, InvocationType="Event", Payload=b"{not json"
    )
    assert (status, code) == (400, "InvalidRequestContentException")


# -- the event invoke config API ----------------------------------------------------------------


def test_event_invoke_config_put_update_get_list_delete(lam: Any) -> None:
    name = deploy(lam, SUCCEEDS, "config")
    target = deploy(lam, RECORDER, "config-dest")
    other = deploy(lam, RECORDER, "config-dest2")
    arn = f"{ACCOUNT_ARN}{name}:$LATEST"

    status, code = client_error(lam.get_function_event_invoke_config, FunctionName=name)
    assert (status, code) == (404, "ResourceNotFoundException")
    assert (
        lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
        == []
    )

    put = lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": ACCOUNT_ARN + target}},
    )
    assert put["FunctionArn"] == arn
    assert put["MaximumRetryAttempts"] == 1
    assert put["MaximumEventAgeInSeconds"] == 3600
    assert put["DestinationConfig"]["OnFailure"]["Destination"] == ACCOUNT_ARN + target
    assert put["LastModified"]  # a timestamp, parsed by botocore

    got = lam.get_function_event_invoke_config(FunctionName=name)
    for key in (
        "FunctionArn",
        "MaximumRetryAttempts",
        "MaximumEventAgeInSeconds",
        "DestinationConfig",
    ):
        assert got[key] == put[key]

    # Update merges: only what is given changes.
    updated = lam.update_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": ACCOUNT_ARN + other}},
    )
    assert updated["MaximumRetryAttempts"] == 0
    assert updated["MaximumEventAgeInSeconds"] == 3600
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == ACCOUNT_ARN + target
    assert updated["DestinationConfig"]["OnSuccess"]["Destination"] == ACCOUNT_ARN + other
    assert lam.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 0

    # Put replaces: what is not given is gone.
    replaced = lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=120)
    got = lam.get_function_event_invoke_config(FunctionName=name)
    for doc in (replaced, got):
        assert doc["MaximumEventAgeInSeconds"] == 120
        assert "MaximumRetryAttempts" not in doc
        destinations = doc.get("DestinationConfig") or {}
        assert not (destinations.get("OnFailure") or {}).get("Destination")
        assert not (destinations.get("OnSuccess") or {}).get("Destination")

    # The unqualified config is the $LATEST one.
    qualified = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST")
    assert qualified["MaximumEventAgeInSeconds"] == 120
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [arn]
    assert listed[0]["MaximumEventAgeInSeconds"] == 120

    lam.delete_function_event_invoke_config(FunctionName=name)
    status, code = client_error(lam.get_function_event_invoke_config, FunctionName=name)
    assert (status, code) == (404, "ResourceNotFoundException")
    status, code = client_error(lam.delete_function_event_invoke_config, FunctionName=name)
    assert (status, code) == (404, "ResourceNotFoundException")
    assert (
        lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
        == []
    )


def test_event_invoke_config_of_a_missing_function_is_404(lam: Any) -> None:
    status, code = client_error(
        lam.put_function_event_invoke_config, FunctionName=unique("nofn"), MaximumRetryAttempts=1
    )
    assert (status, code) == (404, "ResourceNotFoundException")


def test_update_without_a_config_is_404(lam: Any) -> None:
    name = deploy(lam, SUCCEEDS, "update-none")
    status, code = client_error(
        lam.update_function_event_invoke_config, FunctionName=name, MaximumRetryAttempts=1
    )
    assert (status, code) == (404, "ResourceNotFoundException")


def test_event_invoke_config_is_validated(aserver: LiveServer, lam: Any) -> None:
    raw = aserver.client("lambda", validate=False)
    name = deploy(lam, SUCCEEDS, "validated")
    for bad in (
        {"MaximumRetryAttempts": 3},
        {"MaximumRetryAttempts": -1},
        {"MaximumEventAgeInSeconds": 59},
        {"MaximumEventAgeInSeconds": 21601},
    ):
        status, _ = client_error(raw.put_function_event_invoke_config, FunctionName=name, **bad)
        assert status == 400, bad
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
        status, _ = client_error(raw.update_function_event_invoke_config, FunctionName=name, **bad)
        assert status == 400, bad
    for edge in (
        {"MaximumRetryAttempts": 0},
        {"MaximumRetryAttempts": 2},
        {"MaximumEventAgeInSeconds": 60},
        {"MaximumEventAgeInSeconds": 21600},
    ):
        lam.put_function_event_invoke_config(FunctionName=name, **edge)

    sqs = "arn:aws:sqs:us-east-1:000000000000:failures"
    status, code = client_error(
        raw.put_function_event_invoke_config,
        FunctionName=name,
        DestinationConfig={"OnFailure": {"Destination": sqs}},
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    status, code = client_error(
        raw.update_function_event_invoke_config,
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": sqs}},
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    status, code = client_error(
        raw.put_function_event_invoke_config,
        FunctionName=name,
        DestinationConfig={
            "OnFailure": {"Destination": "arn:aws:lambda:eu-west-1:111111111111:function:x"}
        },
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    # Nothing invalid was stored.
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumEventAgeInSeconds"] == 21600
    assert not (got.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")


def test_deleting_the_function_deletes_its_event_invoke_configs(lam: Any) -> None:
    name = deploy(lam, SUCCEEDS, "deleted")
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    lam.delete_function(FunctionName=name)
    status, _ = client_error(lam.get_function_event_invoke_config, FunctionName=name)
    assert status == 404
    # A new function of the same name starts without it.
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": SUCCEEDS})},
    )
    status, code = client_error(lam.get_function_event_invoke_config, FunctionName=name)
    assert (status, code) == (404, "ResourceNotFoundException")
    assert (
        lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
        == []
    )


# -- DeadLetterConfig ---------------------------------------------------------------------------


def test_dead_letter_config_is_stored_and_validated(lam: Any, aserver: LiveServer) -> None:
    sqs = "arn:aws:sqs:us-east-1:000000000000:dead-letters"
    sns = "arn:aws:sns:us-east-1:000000000000:dead-letters"
    name = unique("dlq")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": SUCCEEDS})},
        DeadLetterConfig={"TargetArn": sqs},
    )
    assert created["DeadLetterConfig"] == {"TargetArn": sqs}
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {
        "TargetArn": sqs
    }
    assert lam.get_function(FunctionName=name)["Configuration"]["DeadLetterConfig"] == {
        "TargetArn": sqs
    }

    updated = lam.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": sns}
    )
    assert updated["DeadLetterConfig"] == {"TargetArn": sns}
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {
        "TargetArn": sns
    }

    # ARNs of other services are refused by Lambda's own check; what is not an ARN at all
    # already fails the model's pattern (ValidationException), as on AWS.
    for bad, error in (
        ("arn:aws:s3:::a-bucket", "InvalidParameterValueException"),
        (f"{ACCOUNT_ARN}{name}", "InvalidParameterValueException"),
        ("not-an-arn", "ValidationException"),
    ):
        status, code = client_error(
            lam.update_function_configuration,
            FunctionName=name,
            DeadLetterConfig={"TargetArn": bad},
        )
        assert (status, code) == (400, error), bad
        status, code = client_error(
            lam.create_function,
            FunctionName=unique("dlq-bad"),
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": SUCCEEDS})},
            DeadLetterConfig={"TargetArn": bad},
        )
        assert (status, code) == (400, error), bad
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {
        "TargetArn": sns
    }

    # An empty TargetArn removes it, as on AWS.
    cleared = lam.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": ""}
    )
    assert not (cleared.get("DeadLetterConfig") or {}).get("TargetArn")
    # The function still runs.
    assert ok(lam, name, {"name": "x", "items": []}) == {"greeting": "Hello, x", "count": 0}


# -- scheduling: fairness and throttling --------------------------------------------------------


def _send_many(
    server: LiveServer, name: str, events: list[dict[str, Any]], threads: int = 8
) -> None:
    def send(chunk: list[dict[str, Any]]) -> None:
        lam = server.client("lambda")
        for event in chunk:
            send_event(lam, name, event)

    chunks = [events[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, chunks))


def test_one_backlog_does_not_starve_another_function(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    live = started(tmp_path_factory, EMBER_ASYNC_CONCURRENCY="2", EMBER_ASYNC_RETRY_BASE="0.2")
    try:
        lam = live.client("lambda")
        busy = deploy(lam, MARKER, "busy")
        quiet = deploy(lam, MARKER, "quiet")
        _send_many(live, busy, [{"id": f"a{i}", "sleep": 0.02} for i in range(300)])
        for i in range(5):
            send_event(lam, quiet, {"id": f"b{i}"})

        def quiet_done() -> dict[str, dict[str, Any]] | None:
            table = queue_stats(live)
            return table if table.get(quiet, {}).get("succeeded") == 5 else None

        table = wait_for("the quiet function's 5 events", quiet_done)
        backlog = table[busy]
        assert backlog["queued"] > 0, f"the busy function's backlog was already gone: {table}"
        assert backlog["succeeded"] < 300
        assert backlog["oldest_age_s"] > 0
        assert sorted(marked(live.data_dir, quiet, "RAN ")) == [f"b{i}" for i in range(5)]

        # The backlog drains in the end, every event once.
        wait_for(
            "the busy function's 300 events",
            lambda: function_stats(live, busy)["succeeded"] == 300,
            timeout=60,
        )
        ran = Counter(marked(live.data_dir, busy, "RAN "))
        assert len(ran) == 300 and set(ran.values()) == {1}
    finally:
        live.stop()


def test_throttled_events_wait_and_are_not_dropped(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    live = started(tmp_path_factory, EMBER_CONCURRENCY="1", EMBER_ASYNC_RETRY_BASE="0.2")
    try:
        lam = live.client("lambda")
        name = deploy(lam, MARKER, "throttled")
        ids = [f"t{i}" for i in range(20)]
        _send_many(live, name, [{"id": i, "sleep": 0.05} for i in ids], threads=4)
        # A synchronous caller meanwhile competes for the one slot: 429 or success, never harm.
        try:
            lam.invoke(FunctionName=name, Payload=json.dumps({"id": "sync"}))
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TooManyRequestsException"

        stats = wait_for(
            "20 throttled events to run",
            lambda: s if (s := function_stats(live, name))["succeeded"] == 20 else None,
            timeout=60,
        )
        assert stats["failures"] == 0 and stats["expired"] == 0
        assert stats["retries"] == 0  # waiting for capacity is not a failed attempt
        ran = Counter(marked(live.data_dir, name, "RAN "))
        ran.pop("sync", None)
        assert sorted(ran) == sorted(ids)
        assert set(ran.values()) == {1}, ran
    finally:
        live.stop()


# -- expiry (runs last: its server was started with the module) ---------------------------------


def test_event_older_than_its_maximum_age_goes_to_on_failure(expiring: Expiring) -> None:
    live = expiring.server
    remaining = 150 - (time.monotonic() - expiring.sent_at)
    [record] = wait_for_records(live, expiring.destination, timeout=max(remaining, 5))
    assert time.monotonic() - expiring.sent_at >= 60
    context = record["requestContext"]
    assert context["condition"] == "EventAgeExceeded"
    assert context["functionArn"] == f"{ACCOUNT_ARN}{expiring.function}:$LATEST"
    assert context["approximateInvokeCount"] == 1  # the first attempt; the retry came too late
    assert record["requestPayload"] == expiring.event
    ids = report_ids(log_messages(live.data_dir, expiring.function))
    assert ids == [context["requestId"]], "the expired retry must not run"
    stats = function_stats(live, expiring.function)
    assert stats["expired"] == 1 and stats["failures"] == 0 and stats["succeeded"] == 0
    assert stats["retries"] == 1 and stats["queued"] == 0


def test_an_event_that_can_never_start_still_expires(expiring: Expiring) -> None:
    live = expiring.server
    remaining = 150 - (time.monotonic() - expiring.sent_at)
    [record] = wait_for_records(live, expiring.blocked_destination, timeout=max(remaining, 5))
    context = record["requestContext"]
    assert context["condition"] == "EventAgeExceeded"
    assert context["approximateInvokeCount"] == 0  # reserved concurrency 0: it never ran
    assert record["requestPayload"] == expiring.blocked_event
    assert "responseContext" not in record
    assert report_ids(log_messages(live.data_dir, expiring.blocked)) == []
    stats = function_stats(live, expiring.blocked)
    assert stats["expired"] == 1 and stats["queued"] == 0
