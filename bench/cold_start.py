"""Cold start: the first invoke of a function that has never run, through the HTTP Invoke API.

For each iteration a new function is created with boto3 (not timed), the platform is left a
moment to settle (`--gap`), and the first invoke is timed end to end from the client (a raw
keep-alive HTTP connection, so TCP setup is not part of it). Every invoke asks for
`X-Amz-Log-Type: Tail`; the REPORT line's `Init Duration` (Ember's own account of the cold
start) and `Duration` are parsed from it.

Baselines, measured in the same run, each on a brand-new module file (nothing cached):
  * fresh python3 process: `python3 -c` importing app.py from a new directory and calling it
    (the naive platform: a process per call)
  * in-process import + call: importing app.py from a new directory into this process and
    calling the handler (the floor for "load code and run it once")

Usage: .venv/bin/python bench/cold_start.py [--quick] [--iterations N]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    EVENT,
    EXPECTED_BODY,
    EmberServer,
    HttpClient,
    base_python,
    fmt,
    fresh_process_call,
    invoke_request,
    load_handler,
    log_tail,
    parse_report,
    print_table,
    ratio,
    results_name,
    scan_log_for_problems,
    summarize_ms,
    temp_dir,
    warn_if_busy,
    write_handler,
    write_results,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (10 iterations)")
    p.add_argument("--iterations", type=int, default=None, help="cold starts to time (default 50)")
    p.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="cold starts run first and not recorded (the server's own first-use costs)",
    )
    p.add_argument(
        "--gap",
        type=float,
        default=0.25,
        help="seconds between CreateFunction and the timed invoke (default 0.25)",
    )
    p.add_argument("--runtime", default="python3.11")
    p.add_argument("--memory", type=int, default=128, help="MemorySize in MB")
    args = p.parse_args(argv)
    if args.iterations is None:
        args.iterations = 10 if args.quick else 50
    return args


def measure_ember(args: argparse.Namespace) -> dict[str, Any]:
    firsts_ns: list[int] = []
    inits_ms: list[float] = []
    outside_ns: list[int] = []  # client-observed minus Init Duration, per cold start
    durations_ms: list[float] = []
    creates_ns: list[int] = []
    problems: list[str] = []
    not_cold = 0
    with EmberServer(keep_log_as=results_name("cold_start", args.memory) + "-server.log") as server:
        client = HttpClient(server.port)
        tag = uuid.uuid4().hex[:6]
        for i in range(args.warmup + args.iterations):
            name = f"cold-{tag}-{i:04d}"
            t0 = time.perf_counter_ns()
            server.create_function(name, runtime=args.runtime, memory_mb=args.memory)
            create_ns = time.perf_counter_ns() - t0
            time.sleep(args.gap)
            raw = invoke_request(name, tail=True)
            t0 = time.perf_counter_ns()
            try:
                response = client.request(raw)
            except Exception as exc:
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter_ns() - t0
            if response.status != 200 or response.body != EXPECTED_BODY:
                problems.append(
                    f"{name}: HTTP {response.status} "
                    f"{response.headers.get('x-amz-function-error', '')} {response.body[:300]!r}"
                )
                continue
            report = parse_report(log_tail(response))
            if i < args.warmup:
                continue
            firsts_ns.append(elapsed)
            creates_ns.append(create_ns)
            if report["init_ms"] is None:
                not_cold += 1
            else:
                inits_ms.append(report["init_ms"])
                outside_ns.append(elapsed - int(report["init_ms"] * 1e6))
            if report["duration_ms"] is not None:
                durations_ms.append(report["duration_ms"])
        client.close()
        log_problems = scan_log_for_problems(server.log())
    if server.leftovers:
        problems.append(
            f"{len(server.leftovers)} server processes alive after it stopped: "
            f"{server.leftovers[:3]}"
        )
    return {
        "first_invoke": summarize_ms(firsts_ns),
        "init_duration": summarize_ms([int(x * 1e6) for x in inits_ms]),
        "first_invoke_minus_init": summarize_ms(outside_ns),
        "report_duration": summarize_ms([int(x * 1e6) for x in durations_ms]),
        "create_function_boto3": summarize_ms(creates_ns),
        "invokes_without_init_duration": not_cold,
        "errors": problems,
        "server_log_problems": log_problems,
        "samples_ms": [round(x / 1e6, 3) for x in firsts_ns],
    }


def measure_fresh_process(n: int, work: Path) -> dict[str, Any]:
    python = base_python()
    samples: list[int] = []
    for i in range(n):
        task = work / f"fresh-{i}"
        write_handler(task)
        samples.append(fresh_process_call(python, task))
    return {"interpreter": python, **summarize_ms(samples)}


def measure_in_process(n: int, work: Path) -> dict[str, Any]:
    samples: list[int] = []
    for i in range(n):
        path = write_handler(work / f"inproc-{i}")
        t0 = time.perf_counter_ns()
        handler = load_handler(path, f"bench_cold_app_{i}")
        result = handler(dict(EVENT), None)
        samples.append(time.perf_counter_ns() - t0)
        assert result == "Hello, Sally"
    return summarize_ms(samples)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warn_if_busy()
    print(
        f"cold start: {args.iterations} iterations (+{args.warmup} warm-up), {args.runtime}, "
        f"{args.memory} MB, {args.gap}s between create and invoke",
        flush=True,
    )
    ember = measure_ember(args)
    with temp_dir("ember-bench-cold-") as work:
        fresh = measure_fresh_process(args.iterations, work)
        inproc = measure_in_process(args.iterations, work)

    first = ember["first_invoke"]
    rows = [
        ["Ember: first invoke via Invoke API (client-observed)", first, first],
        ["Ember: REPORT Init Duration", ember["init_duration"], first],
        ["Ember: first invoke minus Init Duration", ember["first_invoke_minus_init"], first],
        ["Ember: REPORT Duration (handler)", ember["report_duration"], first],
        ["baseline: fresh python3 process per call", fresh, first],
        ["baseline: in-process import + call (floor)", inproc, first],
    ]
    table = []
    for label, s, ember_s in rows:
        table.append(
            [
                label,
                fmt(s["n"]),
                fmt(s["p50_ms"]),
                fmt(s["p99_ms"]),
                fmt(s["mean_ms"]),
                fmt(s["min_ms"]),
                fmt(s["max_ms"]),
                ratio(ember_s["p50_ms"], s["p50_ms"]) if label.startswith("baseline") else "",
            ]
        )
    print_table(
        "Cold start (ms; target through the Invoke API: p50 <= 3, p99 <= 10)",
        ["measure", "n", "p50", "p99", "mean", "min", "max", "Ember/this p50"],
        table,
    )
    c = ember["create_function_boto3"]
    print(
        f"(not timed above) CreateFunction via boto3: p50 {fmt(c['p50_ms'])} ms, "
        f"p99 {fmt(c['p99_ms'])} ms"
    )
    if ember["invokes_without_init_duration"]:
        print(
            f"warning: {ember['invokes_without_init_duration']} first invokes had no Init Duration "
            "in their REPORT line"
        )
    if ember["errors"]:
        print(f"ERRORS ({len(ember['errors'])}):")
        for line in ember["errors"][:10]:
            print("  " + line)
    if ember["server_log_problems"]:
        print("server log lines that look like problems:")
        for line in ember["server_log_problems"][:20]:
            print("  " + line)

    results = {
        "config": {
            "iterations": args.iterations,
            "warmup": args.warmup,
            "gap_s": args.gap,
            "runtime": args.runtime,
            "memory_mb": args.memory,
            "quick": args.quick,
        },
        "ember": ember,
        "baseline_fresh_process": fresh,
        "baseline_in_process_import_call": inproc,
    }
    path = write_results(
        results_name("cold_start", args.memory), results, ["bench/cold_start.py", *argv]
    )
    print(f"results written to {path}")
    return 1 if ember["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
