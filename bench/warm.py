"""Warm invoke: latency (sequential) and throughput (concurrency 1, 8, 32) through the Invoke API.

Ember is measured end to end over HTTP on 127.0.0.1 with a raw keep-alive client (one
connection per worker thread, request bytes built once). Baselines, in the same run:
  * direct in-process call of the handler (the floor)
  * a fresh python3 process per call (the naive platform; latency only, fewer iterations)
  * bare uvicorn (uvloop + httptools) + Starlette calling the handler in-process (the server
    model), measured with the same client at the same concurrency levels

Throughput is a closed loop: each worker sends its next request when the previous one is
answered, for a fixed duration after a warm-up (which also lets Ember scale out to one warm
instance per worker). The client runs on the same 2 cores as the server, so its own CPU use is
reported too.

Usage: .venv/bin/python bench/warm.py [--quick] [--n 2000] [--duration 5] [--concurrency 1,8,32]
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
    EmberServer,
    HttpClient,
    LoadResult,
    UvicornBaseline,
    base_python,
    fmt,
    fresh_process_call,
    invoke_request,
    load_handler,
    print_table,
    ratio,
    results_name,
    run_load,
    scan_log_for_problems,
    sequential,
    summarize_ms,
    temp_dir,
    warn_if_busy,
    write_handler,
    write_results,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run (n=300, 1.5 s per throughput level, 10 fresh processes)",
    )
    p.add_argument("--n", type=int, default=None, help="sequential invokes timed (default 2000)")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per throughput level (default 5)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="warm-up seconds before each throughput level (default 1)",
    )
    p.add_argument(
        "--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)"
    )
    p.add_argument(
        "--fresh-n", type=int, default=None, help="fresh-process calls timed (default 100)"
    )
    p.add_argument("--runtime", default="python3.11")
    p.add_argument("--memory", type=int, default=128, help="MemorySize in MB")
    args = p.parse_args(argv)
    args.n = args.n or (300 if args.quick else 2000)
    args.duration = args.duration or (1.5 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.fresh_n = args.fresh_n or (10 if args.quick else 100)
    args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    return args


def load_summary(result: LoadResult) -> dict[str, Any]:
    return {
        "concurrency": result.concurrency,
        "duration_s": round(result.duration_s, 3),
        "ok": result.ok,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "latency": summarize_ms(result.latencies_ns),
        "error_samples": result.error_samples,
        "client_cpu_cores": round(result.client_cpu_s / result.duration_s, 2),
        "machine_busy_cores": round(result.machine_busy_cores, 2),
        "server_cpu_cores": _cores(result.server_cpu_s, result.duration_s),
        "server_children_cpu_cores": _cores(result.children_cpu_s, result.duration_s),
        "server_cpu_us_per_ok": _per_ok(result.server_cpu_s, result.ok),
        "server_children_cpu_us_per_ok": _per_ok(result.children_cpu_s, result.ok),
    }


def _cores(cpu_s: float | None, duration_s: float) -> float | None:
    return None if cpu_s is None or duration_s <= 0 else round(cpu_s / duration_s, 2)


def _per_ok(cpu_s: float | None, ok: int) -> float | None:
    return None if cpu_s is None or ok == 0 else round(cpu_s / ok * 1e6, 1)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def direct_calls(path: Path, n: int, duration_s: float) -> dict[str, Any]:
    """The floor: the handler called in this process (no JSON, no HTTP, no isolation)."""
    handler = load_handler(path, "bench_warm_app")
    event = dict(EVENT)
    clock = time.perf_counter_ns
    for _ in range(1000):
        handler(event, None)
    lats = []
    for _ in range(n):
        t0 = clock()
        handler(event, None)
        lats.append(clock() - t0)
    # throughput: as many calls as one thread makes in `duration_s` (threads would not add any)
    calls = 0
    end = time.perf_counter() + duration_s
    start = time.perf_counter()
    while True:
        for _ in range(1000):
            handler(event, None)
        calls += 1000
        if time.perf_counter() >= end:
            break
    elapsed = time.perf_counter() - start
    return {"latency": summarize_ms(lats), "rps": round(calls / elapsed, 1)}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warn_if_busy()
    print(
        f"warm: n={args.n} sequential, {args.duration}s per throughput level at "
        f"{args.levels}, {args.runtime}, {args.memory} MB",
        flush=True,
    )
    results: dict[str, Any] = {
        "config": {
            "n": args.n,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "levels": args.levels,
            "fresh_n": args.fresh_n,
            "runtime": args.runtime,
            "memory_mb": args.memory,
            "quick": args.quick,
        },
    }
    problems: list[str] = []
    with (
        temp_dir("ember-bench-warm-") as work,
        EmberServer(keep_log_as=results_name("warm", args.memory) + "-server.log") as ember,
    ):
        task_dir = work / "task"
        app_py = write_handler(task_dir)
        name = f"warm-{uuid.uuid4().hex[:6]}"
        ember.create_function(name, runtime=args.runtime, memory_mb=args.memory)
        raw = invoke_request(name)

        with UvicornBaseline(task_dir) as uvi:
            # ---- sequential latency
            seq: dict[str, Any] = {}
            for label, port in (("ember", ember.port), ("uvicorn", uvi.port)):
                client = HttpClient(port)
                sequential(client, raw, 200)  # warm-up: connection, instance, caches
                lats, errors = sequential(client, raw, args.n)
                client.close()
                seq[label] = {
                    **summarize_ms(lats),
                    "errors": len(errors),
                    "error_samples": errors[:5],
                }
                if errors:
                    problems.append(f"sequential {label}: {len(errors)} errors, e.g. {errors[0]}")
                print(f"  sequential {label}: p50 {fmt(seq[label]['p50_ms'])} ms", flush=True)
            direct = direct_calls(app_py, args.n, min(args.duration, 2.0))
            python = base_python()
            fresh = [fresh_process_call(python, task_dir) for _ in range(args.fresh_n)]
            seq["fresh_process"] = {"interpreter": python, **summarize_ms(fresh)}
            seq["direct"] = direct["latency"]
            results["sequential"] = seq

            # ---- throughput
            levels: list[dict[str, Any]] = []
            for level in args.levels:
                row: dict[str, Any] = {"concurrency": level}
                assert ember.process is not None and uvi.process is not None
                for label, port, pid in (
                    ("ember", ember.port, ember.process.pid),
                    ("uvicorn", uvi.port, uvi.process.pid),
                ):
                    log_mark = ember.log_size()
                    result = run_load(port, raw, level, args.duration, args.warmup, server_pid=pid)
                    row[label] = load_summary(result)
                    if result.errors:
                        problems.append(
                            f"throughput {label} c={level}: {result.errors} errors "
                            f"of {result.ok + result.errors}, e.g. {result.error_samples[:3]}"
                        )
                    if label == "ember":
                        trouble = scan_log_for_problems(ember.log_since(log_mark))
                        if trouble:
                            row["ember_log_problems"] = trouble
                            problems.append(f"server log during c={level}: {trouble[:5]}")
                    print(
                        f"  c={level} {label}: {fmt(result.rps)} req/s, "
                        f"p50 {fmt(row[label]['latency']['p50_ms'])} ms, errors {result.errors}",
                        flush=True,
                    )
                levels.append(row)
            results["throughput"] = levels
            results["direct_rps"] = direct["rps"]
        # after all the load: does a plain invoke still work?
        check = HttpClient(ember.port)
        _, after_errors = sequential(check, raw, 20)
        check.close()
        if after_errors:
            problems.append(f"after the load, invokes fail: {after_errors[:3]}")
        results["server_log_problems"] = scan_log_for_problems(ember.log())
    if ember.leftovers:
        problems.append(
            f"{len(ember.leftovers)} server processes alive after it stopped: {ember.leftovers[:3]}"
        )
    results["leftover_processes_after_stop"] = ember.leftovers
    results["problems"] = problems

    # ---- tables
    s = results["sequential"]
    e = s["ember"]
    rows = [
        ["Ember Invoke API (HTTP)", s["ember"], ""],
        [
            "baseline: uvicorn + starlette (HTTP)",
            s["uvicorn"],
            ratio(e["p50_ms"], s["uvicorn"]["p50_ms"]),
        ],
        [
            "baseline: fresh python3 process per call",
            s["fresh_process"],
            ratio(e["p50_ms"], s["fresh_process"]["p50_ms"]),
        ],
        [
            "baseline: direct in-process call (floor)",
            s["direct"],
            ratio(e["p50_ms"], s["direct"]["p50_ms"]),
        ],
    ]
    print_table(
        f"Warm latency, sequential (ms; target Ember p50 <= 0.5; n={args.n}, "
        f"fresh process n={args.fresh_n})",
        ["system", "n", "p50", "p99", "mean", "Ember/this p50"],
        [
            [label, fmt(x["n"]), fmt(x["p50_ms"]), fmt(x["p99_ms"]), fmt(x["mean_ms"]), r]
            for label, x, r in rows
        ],
    )
    trows = []
    for row in results["throughput"]:
        em, uv = row["ember"], row["uvicorn"]
        for label, x, r in (
            ("Ember", em, ""),
            ("uvicorn + starlette", uv, ratio(em["rps"], uv["rps"])),
        ):
            trows.append(
                [
                    str(row["concurrency"]),
                    label,
                    fmt(x["rps"]),
                    fmt(x["latency"]["p50_ms"]),
                    fmt(x["latency"]["p99_ms"]),
                    fmt(x["errors"]),
                    f"{fmt(x['server_cpu_cores'], 2)} + {fmt(x['server_children_cpu_cores'], 2)}",
                    f"{_us(x['server_cpu_us_per_ok'])} + {_us(x['server_children_cpu_us_per_ok'])}",
                    fmt(x["client_cpu_cores"], 2),
                    fmt(x["machine_busy_cores"], 2),
                    r,
                ]
            )
        if row["concurrency"] == 1:
            trows.append(
                [
                    "1",
                    "direct in-process call",
                    fmt(results["direct_rps"]),
                    "-",
                    "-",
                    "0",
                    "-",
                    "-",
                    "-",
                    "-",
                    ratio(em["rps"], results["direct_rps"]),
                ]
            )
    print_table(
        f"Warm throughput, closed loop, {args.duration}s per level (target Ember >= 5,000 req/s)",
        [
            "concurrency",
            "system",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server cores (main + children)",
            "server CPU us/req (main + children)",
            "client cores",
            "machine cores",
            "Ember/this req/s",
        ],
        trows,
        text_columns=2,
    )
    print(
        "server cores: CPU used during the window by the server's main process + its "
        "descendants (Ember: zygotes and sandboxes; uvicorn: none).\nclient / machine cores: "
        "the load generator's CPU and the whole machine's (2 cores, shared by client and server)."
    )
    if problems:
        print("PROBLEMS:")
        for line in problems:
            print("  " + line[:1000])
    path = write_results(results_name("warm", args.memory), results, ["bench/warm.py", *argv])
    print(f"results written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
