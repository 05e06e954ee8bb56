"""The long run of the fuzz the test suite runs bounded (tests/integration/test_fuzz_operations.py).

    .venv/bin/python bench/fuzz.py [--duration 300] [--seed 1] [--round 4000] [--raw-share 0.25]

Starts `ember server` (account concurrency 20, one blank sandbox per runtime), then runs rounds
until `--duration` seconds have passed, each with a new seed: `--round` requests, a
`--raw-share` of them raw malformed HTTP and the rest mutated requests for every operation of
the lambda, logs and cloudwatch models through boto3 with validation off (tests/fuzzing.py).
Prints what was sent and answered, every distinct finding (a 5xx other than an honest 501, no
answer, an unparseable answer) with the request that caused it, the server log's tracebacks, and
how deep it got per implemented operation (requests, 2xx answers). Writes
bench/results/fuzz.json; exits 1 when it found anything. Replay a finding with its seed:
`--seed <n> --duration 0` runs one round. `--workers N` runs N fuzzers at once (seeds n..n+N-1),
which also races requests on the same resources.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import REPO_DIR, EmberServer, print_table, write_results

sys.path.insert(0, str(REPO_DIR / "tests"))
import fuzzing  # the fuzzer lives beside the tests that run it bounded


def runtime_of(server: EmberServer) -> str:
    import json
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/health", timeout=5) as answer:
        runtimes: list[str] = json.load(answer)["runtimes"]
    preferred = ("python3.12", "python3.11", "python3.13")
    return next((r for r in preferred if r in runtimes), runtimes[0])


def fuzz_once(
    endpoint: str, runtime: str, seed: int, model: int, raw: int, until: float | None
) -> fuzzing.Tally:
    tally = fuzzing.ModelFuzzer(endpoint, seed, runtime).run(model, until)
    tally.add(fuzzing.RawFuzzer(endpoint, seed).run(raw, until))
    return tally


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of fuzzing")
    parser.add_argument("--seed", type=int, default=1, help="the first round's seed")
    parser.add_argument("--round", type=int, default=4000, help="requests per round")
    parser.add_argument("--raw-share", type=float, default=0.25, help="raw HTTP share of a round")
    parser.add_argument(
        "--workers", type=int, default=1, help="fuzzers at once (each its own seed): races too"
    )
    args = parser.parse_args(argv)

    tally = fuzzing.Tally()
    seeds: list[int] = []
    with EmberServer(
        extra_args=["--concurrency", "20", "--sandbox-pool", "1"], keep_log_as="fuzz-server.log"
    ) as server:
        runtime = runtime_of(server)
        started = time.monotonic()
        deadline = started + args.duration
        seed = args.seed
        while True:
            raw = int(args.round * args.raw_share)
            until = deadline if seeds else None  # the first round always runs whole
            round_seeds = list(range(seed, seed + args.workers))
            with ThreadPoolExecutor(args.workers) as pool:
                parts = [
                    pool.submit(
                        fuzz_once, server.endpoint, runtime, s, args.round - raw, raw, until
                    )
                    for s in round_seeds
                ]
                for part in parts:
                    tally.add(part.result())
            seeds.extend(round_seeds)
            seed += args.workers
            print(f"round {len(seeds)} (seed {seeds[-1]}): {tally.summary()}", file=sys.stderr)
            if time.monotonic() >= deadline:
                break
        elapsed = time.monotonic() - started
        problems = fuzzing.log_problems(server.log())
        alive = server.process is not None and server.process.poll() is None

    print(
        f"\n{tally.summary()} in {elapsed:.0f} s ({tally.sent / elapsed:.0f} requests/s), "
        f"seeds {seeds[0]}..{seeds[-1]}; server alive at the end: {alive}\n"
    )
    print_table(
        "Answers by status",
        ["status", "requests"],
        [[str(status), str(count)] for status, count in sorted(tally.statuses.items())],
    )
    implemented = fuzzing.implemented_operations()
    rows = []
    for service, operations in implemented.items():
        for operation in sorted(operations):
            key = f"{service}.{operation}"
            rows.append([key, str(tally.operations[key]), str(tally.accepted[key])])
    print_table(
        "Implemented operations: requests and 2xx answers", ["operation", "sent", "2xx"], rows
    )
    distinct = tally.distinct()
    print(f"\n{len(distinct)} distinct findings:")
    for finding in distinct:
        print(finding)
    print(f"\n{sum(problems.values())} tracebacks in the server log ({len(problems)} distinct):")
    for line, count in problems.most_common():
        print(f"{count:6}  {line}")
    results: dict[str, Any] = {
        "seeds": seeds,
        "elapsed_s": elapsed,
        "sent": tally.sent,
        "unsendable": tally.unsendable,
        "honest_501": tally.honest_501,
        "statuses": dict(tally.statuses),
        "operations": len(tally.operations),
        "findings": [vars(f) for f in distinct],
        "log_problems": dict(problems),
        "server_alive": alive,
    }
    print(f"\nwrote {write_results('fuzz', results, argv)}")
    return 1 if distinct or problems or not alive else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
