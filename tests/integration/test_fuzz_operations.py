"""Bad input never yields a 500: a seeded fuzz of every operation Ember serves.

A server of its own (the fuzz creates, changes and deletes things at random, reserved and
provisioned concurrency included, which would disturb the shared server's other tests) gets
~2,000 requests: every operation of the `lambda`, `logs` and `cloudwatch` models through boto3
with client-side validation off — plain ones that reach the handlers and mutated ones (wrong
types, numbers past 32/64 bits, hostile strings, ARNs of other partitions, regions and accounts,
nulls, missing members) — and raw malformed HTTP (tests/fuzzing.py). Every answer must be a
non-5xx or an honest 501 NotImplementedException, and the server must log no unhandled error.
`EMBER_FUZZ_SEED` replays another seed; bench/fuzz.py runs longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LiveServer, free_port
from fuzzing import (
    SERVICES,
    ModelFuzzer,
    RawFuzzer,
    Tally,
    implemented_operations,
    log_problems,
)

SEED = int(os.environ.get("EMBER_FUZZ_SEED", "20261202"))
MODEL_REQUESTS = 1500
RAW_REQUESTS = 500


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # A small account (at most 18 provisioned instances) and a small blank pool.
    live = LiveServer(
        tmp_path_factory.mktemp("fuzz") / "data",
        free_port(),
        extra_env={"EMBER_CONCURRENCY": "20", "EMBER_SANDBOX_POOL": "1"},
    )
    live.start()
    yield live
    live.stop()


def runtime_of(server: LiveServer) -> str:
    import json
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/health", timeout=5) as answer:
        runtimes: list[str] = json.load(answer)["runtimes"]
    return next(
        (r for r in ("python3.12", "python3.11", "python3.13") if r in runtimes), runtimes[0]
    )


def report(tally: Tally) -> str:
    return tally.summary() + "\n" + "\n".join(str(f) for f in tally.distinct()[:20])


@pytest.fixture(scope="module")
def model_tally(fuzz_server: LiveServer) -> Tally:
    return ModelFuzzer(fuzz_server.endpoint, SEED, runtime_of(fuzz_server)).run(MODEL_REQUESTS)


def test_every_operation_answers_without_a_5xx(model_tally: Tally) -> None:
    assert not model_tally.findings, report(model_tally)


def test_the_fuzz_covers_every_operation_and_reaches_the_handlers(
    fuzz_server: LiveServer, model_tally: Tally
) -> None:
    import botocore.session

    session = botocore.session.get_session()
    every = {
        f"{service}.{name}"
        for service in SERVICES
        for name in session.get_service_model(service).operation_names
    }
    assert every <= set(model_tally.operations), sorted(every - set(model_tally.operations))[:10]
    # Not all stopped at validation: most implemented operations succeeded at least once...
    implemented = {f"{s}.{op}" for s, ops in implemented_operations().items() for op in ops}
    succeeded = implemented & set(model_tally.accepted)
    assert len(succeeded) >= 0.8 * len(implemented), sorted(implemented - succeeded)
    # ...and the ones Ember does not serve said so honestly.
    assert model_tally.honest_501 >= len([op for op in every if op.startswith("lambda.")]) - len(
        [op for op in implemented if op.startswith("lambda.")]
    )


def test_raw_malformed_http_answers_without_a_5xx(fuzz_server: LiveServer) -> None:
    tally = RawFuzzer(fuzz_server.endpoint, SEED).run(RAW_REQUESTS)
    assert tally.sent == RAW_REQUESTS
    assert not tally.findings, report(tally)


def test_the_server_logged_no_unhandled_error_and_is_healthy(fuzz_server: LiveServer) -> None:
    """Runs last (file order): an error logged as unhandled is a bug even if no client saw it."""
    assert fuzz_server.process is not None and fuzz_server.process.poll() is None
    problems = log_problems(Path(fuzz_server.log_path or "").read_text(errors="replace"))
    assert not problems, problems.most_common(10)
