"""Reserved and provisioned concurrency on a live `ember server`, driven with boto3.

Reservations cap a function and guarantee it capacity (429 with Lambda's `Reason` otherwise);
provisioned concurrency starts instances ahead, so invocations through it have no cold start.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LiveServer, free_port
from invoking import Invoked, deploy, invoke, ok

SLEEPER = """
import os
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"], "version": context.function_version,
            "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}
"""

BROKEN_INIT = "raise RuntimeError('no database')\n\ndef handler(event, context):\n    return 1\n"


def client_error(call: Any, **params: Any) -> tuple[int, str, dict[str, Any]]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response


def concurrently(calls: list[Any]) -> list[Any]:
    """Run the callables at once (released together); each result or the exception it raised."""
    start = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        start.wait()
        try:
            return call()
        except ClientError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def throttled(outcome: Any) -> str | None:
    """The 429's Reason, or None when the call was not throttled."""
    if (
        isinstance(outcome, ClientError)
        and outcome.response["Error"]["Code"] == "TooManyRequestsException"
    ):
        assert outcome.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        return str(outcome.response["Reason"])
    assert not isinstance(outcome, ClientError), outcome
    return None


def test_reserved_concurrency_api(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="rsv", Timeout=10)
    before = lam.get_account_settings()["AccountLimit"]
    assert (
        lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
    )
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    after = lam.get_account_settings()["AccountLimit"]
    assert after["UnreservedConcurrentExecutions"] == before["UnreservedConcurrentExecutions"] - 5
    # The account's 1000 must keep at least 100 unreserved.
    status, error, response = client_error(
        lam.put_function_concurrency,
        FunctionName=name,
        ReservedConcurrentExecutions=after["ConcurrentExecutions"],
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    assert response["Error"]["Message"] == (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100]."
    )
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    lam.delete_function_concurrency(FunctionName=name)
    assert (
        lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
    )
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    assert (
        lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
        == (before["UnreservedConcurrentExecutions"])
    )
    for call in (lam.get_function_concurrency, lam.delete_function_concurrency):
        status, error, _ = client_error(call, FunctionName=name + "-missing")
        assert (status, error) == (404, "ResourceNotFoundException")
    status, error, _ = client_error(
        lam.put_function_concurrency, FunctionName=name + "-missing", ReservedConcurrentExecutions=1
    )
    assert (status, error) == (404, "ResourceNotFoundException")


def test_reserved_one_throttles_the_second_concurrent_caller(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="rsv", Timeout=10)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    call = lambda: ok(lam, name, {"sleep": 2})  # noqa: E731
    outcomes = concurrently([call, call])
    reasons = sorted(str(throttled(o)) for o in outcomes)
    assert reasons == ["None", "ReservedFunctionConcurrentInvocationLimitExceeded"], outcomes
    ok(lam, name)  # the slot is free again once the first call finished


def test_reserved_zero_throttles_every_invoke(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="rsv", Timeout=10)
    ok(lam, name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(3):
        status, error, response = client_error(lam.invoke, FunctionName=name, Payload=b"{}")
        assert (status, error) == (429, "TooManyRequestsException")
        assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert response["Error"]["Message"] == "Rate Exceeded."
    lam.delete_function_concurrency(FunctionName=name)
    ok(lam, name)


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose account runs 10 invocations at once (so at least 1 stays unreserved), and
    whose idle instances are destroyed after a second."""
    live = LiveServer(
        Path(tmp_path_factory.mktemp("small")) / "data",
        free_port(),
        {"EMBER_CONCURRENCY": "10", "EMBER_IDLE_TIMEOUT": "1"},
    )
    live.start()
    yield live
    live.stop()


def test_reservations_guarantee_capacity(small_account: LiveServer) -> None:
    lam = small_account.client("lambda")
    reserved = deploy(lam, SLEEPER, prefix="guaranteed", Timeout=10)
    shared = deploy(lam, SLEEPER, prefix="shared", Timeout=10)
    status, error, response = client_error(
        lam.put_function_concurrency, FunctionName=reserved, ReservedConcurrentExecutions=10
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    assert "minimum value of [1]" in response["Error"]["Message"]
    lam.put_function_concurrency(FunctionName=reserved, ReservedConcurrentExecutions=8)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 2
    # The unreserved pool (2) is full with the shared function's calls: a third is throttled
    # for the account, while the reserved function still runs in its own capacity.
    outcomes = concurrently(
        [
            lambda: ok(lam, shared, {"sleep": 3}),
            lambda: ok(lam, shared, {"sleep": 3}),
            lambda: (time.sleep(1.5), ok(lam, shared))[1],
            lambda: (time.sleep(1.5), ok(lam, reserved))[1],
        ]
    )
    assert [throttled(o) for o in outcomes] == [
        None,
        None,
        "ConcurrentInvocationLimitExceeded",
        None,
    ], outcomes


def wait_for_status(
    lam: Any, name: str, qualifier: str, deadline_s: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        config = dict(
            lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        )
        if config["Status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return config
        time.sleep(0.1)


def test_provisioned_concurrency_on_an_alias(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="prov", Timeout=10)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    put = lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    config = wait_for_status(lam, name, "live")
    assert config["Status"] == "READY", config
    assert config["AllocatedProvisionedConcurrentExecutions"] == 2
    assert config["AvailableProvisionedConcurrentExecutions"] == 2
    # Two at once: both run on provisioned instances, neither has a cold start.
    call = lambda: invoke(lam, name, {"sleep": 0.5}, Qualifier="live")  # noqa: E731
    results: list[Invoked] = concurrently([call, call])
    for result in results:
        assert result.function_error is None, result.payload
        assert result.executed_version == "1"
        assert not result.cold, result.log
        assert "Init Duration" not in result.report.group(0)
        assert result.payload["init"] == "provisioned-concurrency"
    assert len({r.payload["stream"] for r in results}) == 2
    # Elsewhere instances start on demand.
    latest = invoke(lam, name, {})
    assert latest.payload["init"] == "on-demand"
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)[
        "ProvisionedConcurrencyConfigs"
    ]
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    assert [(c["FunctionArn"], c["Status"]) for c in listed] == [(f"{arn}:live", "READY")]
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    status, error, _ = client_error(
        lam.get_provisioned_concurrency_config, FunctionName=name, Qualifier="live"
    )
    assert (status, error) == (404, "ProvisionedConcurrencyConfigNotFoundException")
    assert (
        lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
        == []
    )


def test_provisioned_concurrency_on_a_weighted_alias_warms_both_versions(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="prov", Timeout=10)
    lam.publish_version(FunctionName=name)
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"RELEASE": "2"}}
    )
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="canary", ProvisionedConcurrentExecutions=2
    )
    config = wait_for_status(lam, name, "canary")
    assert config["Status"] == "READY", config
    assert config["AllocatedProvisionedConcurrentExecutions"] == 2
    # Shared by the weights: one instance of each version, so calls landing on either are warm.
    seen = set()
    for _ in range(12):
        result = invoke(lam, name, {}, Qualifier="canary")
        assert result.function_error is None, result.payload
        assert result.payload["init"] == "provisioned-concurrency", result.executed_version
        assert "Init Duration" not in result.report.group(0)
        seen.add(result.executed_version)
    assert seen == {"1", "2"}
    # Shifting every call to version 2 moves the provisioned instances with it.
    lam.update_alias(FunctionName=name, Name="canary", FunctionVersion="2", RoutingConfig={})
    deadline = time.monotonic() + 30
    while True:
        result = invoke(lam, name, {}, Qualifier="canary")
        if result.payload["init"] == "provisioned-concurrency" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert result.executed_version == "2" and result.payload["init"] == "provisioned-concurrency"


def test_provisioned_concurrency_on_a_version_survives_latest_changes(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="prov", Timeout=10)
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    assert wait_for_status(lam, name, "1")["Status"] == "READY"
    lam.update_function_configuration(
        FunctionName=name, Description="changed"
    )  # retires $LATEST only
    first = invoke(lam, name, {}, Qualifier="1")
    assert not first.cold and first.payload["init"] == "provisioned-concurrency"


def test_provisioned_concurrency_refusals(lam: Any) -> None:
    name = deploy(lam, SLEEPER, prefix="prov", Timeout=10)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    for qualifier in ("$LATEST", "edge"):
        status, error, response = client_error(
            lam.put_provisioned_concurrency_config,
            FunctionName=name,
            Qualifier=qualifier,
            ProvisionedConcurrentExecutions=1,
        )
        assert (status, error) == (400, "InvalidParameterValueException")
        assert response["Error"]["Message"] == (
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
        )
    for qualifier in ("7", "nope"):
        status, error, _ = client_error(
            lam.put_provisioned_concurrency_config,
            FunctionName=name,
            Qualifier=qualifier,
            ProvisionedConcurrentExecutions=1,
        )
        assert (status, error) == (404, "ResourceNotFoundException")
    status, error, _ = client_error(
        lam.get_provisioned_concurrency_config, FunctionName=name, Qualifier="1"
    )
    assert (status, error) == (404, "ProvisionedConcurrencyConfigNotFoundException")
    status, error, _ = client_error(
        lam.delete_provisioned_concurrency_config, FunctionName=name, Qualifier="1"
    )
    assert (status, error) == (404, "ProvisionedConcurrencyConfigNotFoundException")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    status, error, _ = client_error(
        lam.put_provisioned_concurrency_config,
        FunctionName=name,
        Qualifier="1",
        ProvisionedConcurrentExecutions=2,
    )
    assert (status, error) == (400, "InvalidParameterValueException")
    lam.delete_function_concurrency(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    status, error, _ = client_error(
        lam.put_provisioned_concurrency_config,
        FunctionName=name,
        Qualifier="1",
        ProvisionedConcurrentExecutions=1,
    )
    assert (status, error) == (409, "ResourceConflictException")
    status, error, _ = client_error(
        lam.list_provisioned_concurrency_configs, FunctionName=name + "-missing"
    )
    assert (status, error) == (404, "ResourceNotFoundException")
    wait_for_status(lam, name, "live")
    lam.delete_function(FunctionName=name)


def test_provisioned_concurrency_failure_is_reported(lam: Any) -> None:
    name = deploy(lam, BROKEN_INIT, prefix="prov")
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    config = wait_for_status(lam, name, "1")
    assert config["Status"] == "FAILED", config
    assert config["StatusReason"]
    assert config["AllocatedProvisionedConcurrentExecutions"] == 0
    result = invoke(lam, name, {}, Qualifier="1")
    assert result.function_error == "Unhandled"
    assert json.loads(result.raw)["errorType"] == "RuntimeError"


def test_provisioned_instances_outlive_idle_expiry_and_restarts(small_account: LiveServer) -> None:
    lam = small_account.client("lambda")
    name = deploy(lam, SLEEPER, prefix="prov", Timeout=10)
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    assert wait_for_status(lam, name, "1")["Status"] == "READY"
    assert invoke(lam, name, {}).cold  # $LATEST: on demand
    time.sleep(3)  # three idle timeouts
    assert invoke(lam, name, {}).cold  # the on-demand instance was reaped...
    kept = invoke(lam, name, {}, Qualifier="1")
    assert (
        not kept.cold and kept.payload["init"] == "provisioned-concurrency"
    )  # ...the provisioned one kept
    small_account.stop()
    small_account.start()
    lam = small_account.client("lambda")
    assert wait_for_status(lam, name, "1")["Status"] == "READY"
    again = invoke(lam, name, {}, Qualifier="1")
    assert not again.cold and again.payload["init"] == "provisioned-concurrency"
    assert (
        lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 2
    )  # reservation kept
