"""What the invocation hooks (metrics, usage series, traces) add to a warm invoke.

Two `ember server`s run side by side in the same run: one as users run it (hooks on), one with
`--no-hooks` (EMBER_HOOKS=off: no invocation hook is registered). Each gets the same function
and the same prebuilt Invoke request over a raw keep-alive connection (bench/common.py). The
sequential latency is measured with the two servers' invokes interleaved request by request
(on, off, off, on, ...), in rounds, so that drift in the machine's load falls on both alike;
then closed-loop throughput at one concurrency level, in alternating rounds. Target: hooks add at most 5 % to the warm invoke.

The hooks are also timed in-process (Metrics.observe and the trace recorder on synthetic
reports), which is their cost with nothing else around them. `--breakdown` adds a run of four
servers — no hooks, metrics only, traces only, both — under the same closed-loop load, to say
which hook costs what (the servers are started through a tiny launcher that keeps only the
chosen hooks on Platform.invoker.hooks; nothing in Ember changes).

Usage: .venv/bin/python bench/hooks_cost.py [--quick] [--n 1000] [--rounds 6]
                                            [--duration 3] [--concurrency 8] [--memory 1769]
                                            [--breakdown]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from statistics import median
from types import SimpleNamespace
from typing import Any

from common import (
    EXPECTED_BODY,
    EmberServer,
    HttpClient,
    cpu_seconds,
    die_with_parent,
    fmt,
    invoke_request,
    print_table,
    run_load,
    scan_log_for_problems,
    sequential,
    summarize_ms,
    wait_http_ok,
    warn_if_busy,
    write_results,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (n=300, 4 rounds, 1.5 s load)")
    p.add_argument(
        "--n", type=int, default=None, help="sequential invokes per round and server (1000)"
    )
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (6)")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of load per server and round (3)"
    )
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--memory",
        type=int,
        default=1769,
        help="MemorySize (default one full core, so the CPU quota does not add noise)",
    )
    p.add_argument("--runtime", default="python3.11")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also load four servers: no hooks, metrics only, traces only, both",
    )
    args = p.parse_args(argv)
    args.n = args.n or (300 if args.quick else 1000)
    args.rounds = args.rounds or (4 if args.quick else 6)
    args.duration = args.duration or (1.5 if args.quick else 3.0)
    return args


# Runs `ember` with only the hooks named in BENCH_HOOKS (comma-separated: metrics, traces).
LAUNCHER = """
import os, sys
from ember import platform as p
keep = {k for k in os.environ.get("BENCH_HOOKS", "").split(",") if k}
init = p.Platform.__init__
def only(self, *args, **kwargs):
    init(self, *args, **kwargs)
    owners = {getattr(self, k, None) for k in keep}
    self.invoker.hooks[:] = [h for h in self.invoker.hooks if getattr(h, "__self__", None) in owners]
p.Platform.__init__ = only
from ember.cli.main import main
sys.argv = ["ember", *sys.argv[1:]]
main()
"""


class SomeHooksServer(EmberServer):
    hooks: str = ""

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            sys.executable,
            "-c",
            LAUNCHER,
            "server",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                preexec_fn=die_with_parent,
                env={**os.environ, "BENCH_HOOKS": self.hooks},
            )
        wait_http_ok(self.endpoint + "/health", self.process, timeout, "ember server", self.log)


def alternating_loads(
    servers: Mapping[str, EmberServer], raw: bytes, args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    """`args.rounds` closed-loop runs on each server, their order reversed every other round:
    req/s and server CPU µs per invoke per round, and samples of the errors."""
    rps: dict[str, list[float]] = {key: [] for key in servers}
    cpu_us: dict[str, list[float]] = {key: [] for key in servers}
    problems: list[str] = []
    keys = list(servers)
    for r in range(args.rounds):
        for key in keys if r % 2 == 0 else keys[::-1]:
            server = servers[key]
            assert server.process is not None
            load = run_load(
                server.port,
                raw,
                args.concurrency,
                args.duration,
                warmup_s=0.5,
                server_pid=server.process.pid,
            )
            rps[key].append(load.rps)
            if load.server_cpu_s is not None and load.ok:
                cpu_us[key].append(load.server_cpu_s / load.ok * 1e6)
            problems += [f"{key} load: {e}" for e in load.error_samples[:3]]
    return rps, cpu_us, problems


def breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """Closed-loop throughput and server CPU per invoke with each combination of hooks."""
    modes = {"none": "", "metrics": "metrics", "traces": "traces", "both": "metrics,traces"}
    servers: dict[str, SomeHooksServer] = {}
    raw = invoke_request("hooks")
    try:
        for mode, hooks in modes.items():
            server = servers[mode] = SomeHooksServer()
            server.hooks = hooks
            server.start()
            server.create_function("hooks", runtime=args.runtime, memory_mb=args.memory)
            client = HttpClient(server.port)
            sequential(client, raw, 300)
            client.close()
        rps, cpu, _ = alternating_loads(servers, raw, args)
    finally:
        for server in servers.values():
            server.stop()
            server.cleanup()
    return {
        mode: {
            "rps_rounds": [round(x) for x in rps[mode]],
            "rps_median": median(rps[mode]),
            "cpu_us_rounds": [round(x) for x in cpu[mode]],
            "cpu_us_median": median(cpu[mode]),
        }
        for mode in modes
    }


def hook_in_process(n: int = 200_000) -> dict[str, float]:
    """ns per Metrics.observe call on a warm (function, version), as the invoker calls it."""
    from ember.dispatch.invoker import InvocationReport
    from ember.observe.metrics import Metrics
    from ember.observe.series import MinuteSeries

    pool = SimpleNamespace(groups={}, live=set(), created=0, destroyed=0, idle_count=lambda: 0)
    limiter = SimpleNamespace(in_flight=1)
    metrics = Metrics(MinuteSeries(), pool, None, limiter, None)  # type: ignore[arg-type]
    report = InvocationReport(
        request_id="r",
        function="hello",
        version="$LATEST",
        memory_mb=128,
        invocation_type="RequestResponse",
        trace_id=None,
        received=time.time(),
        queue_wait_ms=None,
        acquire_ms=0.01,
        init_ms=None,
        duration_ms=0.21,
        billed_ms=1,
        max_memory_mb=3,
        cold=False,
        outcome="success",
        error_type=None,
    )
    observe = metrics.observe
    for _ in range(10_000):
        observe(report)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            observe(report)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return {"observe_ns": round(best, 1)}


def traces_in_process(n: int = 20_000) -> dict[str, float] | None:
    """µs of CPU per invocation for the trace recorder: its hook plus its thread's flush
    (building spans and storing them in SQLite), timed here without a server around it."""
    try:
        from ember.observe.traces import TraceRecorder
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    from ember.dispatch.invoker import InvocationReport

    with tempfile.TemporaryDirectory() as tmp:
        recorder = TraceRecorder(Path(tmp) / "traces.sqlite3", None)
        reports = [
            InvocationReport(
                request_id=f"r{i}",
                function="hello",
                version="$LATEST",
                memory_mb=128,
                invocation_type="RequestResponse",
                trace_id=f"Root=1-{int(time.time()):08x}-{i:024x};Sampled=1",
                received=time.time(),
                queue_wait_ms=None,
                acquire_ms=0.01,
                init_ms=None,
                duration_ms=0.21,
                billed_ms=1,
                max_memory_mb=3,
                cold=False,
                outcome="success",
                error_type=None,
            )
            for i in range(n)
        ]
        t0 = time.thread_time_ns()
        for report in reports:
            recorder.record(report)
        hook_ns = (time.thread_time_ns() - t0) / n
        t0 = time.thread_time_ns()
        recorder.flush()
        flush_ns = (time.thread_time_ns() - t0) / n
        recorder.close()
    return {"record_us": round(hook_ns / 1000, 2), "flush_us": round(flush_ns / 1000, 2)}


def interleaved(
    clients: dict[str, HttpClient], raw: bytes, n: int
) -> tuple[dict[str, list[int]], list[str]]:
    """n invokes on each server, alternating request by request (on, off, off, on, ...): load
    drifting on a shared machine falls on both alike, which back-to-back blocks cannot ensure."""
    lats: dict[str, list[int]] = {key: [] for key in clients}
    errors: list[str] = []
    keys = list(clients)
    clock = time.perf_counter_ns
    for i in range(n):
        for key in keys if i % 2 == 0 else keys[::-1]:
            t0 = clock()
            try:
                response = clients[key].request(raw)
            except Exception as exc:
                errors.append(f"{key}: {type(exc).__name__}: {exc}")
                continue
            t1 = clock()
            if response.status == 200 and response.body == EXPECTED_BODY:
                lats[key].append(t1 - t0)
            else:
                errors.append(f"{key}: HTTP {response.status}: {response.body[:300]!r}")
    return lats, errors


def added(on: float, off: float) -> str:
    return f"{(on - off) / off * 100:+.1f} %" if off else "-"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warn_if_busy()
    print(
        f"hooks_cost: {args.rounds} rounds x {args.n} sequential invokes per server, then "
        f"{args.rounds} x {args.duration}s at concurrency {args.concurrency}; "
        f"{args.runtime}, {args.memory} MB",
        flush=True,
    )
    servers = {"on": EmberServer(), "off": EmberServer(extra_args=["--no-hooks"])}
    results: dict[str, Any] = {"config": vars(args).copy()}
    problems: list[str] = []
    try:
        for server in servers.values():
            server.start()
        clients: dict[str, HttpClient] = {}
        raw = invoke_request("hooks")
        for key, server in servers.items():
            server.create_function("hooks", runtime=args.runtime, memory_mb=args.memory)
            clients[key] = HttpClient(server.port)
            lats, errors = sequential(clients[key], raw, 300)  # cold start + warm-up
            if errors:
                raise RuntimeError(f"warm-up failed ({key}): {errors[:3]}")
        lats: dict[str, list[int]] = {"on": [], "off": []}
        round_p50: dict[str, list[float]] = {"on": [], "off": []}
        seq_cpu: dict[str, float] = {"on": 0.0, "off": 0.0}
        pids = {key: server.process.pid for key, server in servers.items()}  # type: ignore[union-attr]
        for _ in range(args.rounds):
            cpu0 = {key: cpu_seconds(pid) for key, pid in pids.items()}
            got, errors = interleaved(clients, raw, args.n)
            for key, pid in pids.items():
                seq_cpu[key] += cpu_seconds(pid) - cpu0[key]
                lats[key] += got[key]
                round_p50[key].append(float(summarize_ms(got[key])["p50_ms"]))
            problems += errors[:3]
        for client in clients.values():
            client.close()
        rps, cpu_us, load_problems = alternating_loads(servers, raw, args)
        problems += load_problems
        for key, server in servers.items():
            problems += [f"{key} log: {line}" for line in scan_log_for_problems(server.log())]
    finally:
        for server in servers.values():
            server.stop()
            server.cleanup()

    seq = {key: summarize_ms(values) for key, values in lats.items()}
    mean_rps = {key: sum(v) / len(v) for key, v in rps.items()}
    mean_cpu = {key: (sum(v) / len(v) if v else float("nan")) for key, v in cpu_us.items()}
    seq_cpu_us = {key: seq_cpu[key] / max(1, len(lats[key])) * 1e6 for key in seq_cpu}
    hook = hook_in_process()
    traces = traces_in_process()
    # Paired by round (the two servers' invokes interleaved): drift in the machine's load cancels.
    paired = sorted(
        (on - off) / off * 100 for on, off in zip(round_p50["on"], round_p50["off"], strict=True)
    )
    paired_median = median(paired)
    results.update(
        {
            "sequential": seq,
            "rps_rounds": rps,
            "rps": mean_rps,
            "server_cpu_us_per_invoke": mean_cpu,
            "hook_in_process": hook,
            "traces_in_process": traces,
            "round_p50_ms": round_p50,
            "sequential_server_cpu_us_per_invoke": seq_cpu_us,
            "paired_p50_added_pct": paired,
            "problems": problems[:20],
        }
    )
    rows = []
    for stat in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
        on, off = float(seq["on"][stat]), float(seq["off"][stat])
        rows.append([f"sequential {stat[:-3]} (ms)", fmt(on), fmt(off), added(on, off)])
    rows.append(
        [
            "server CPU per invoke, sequential (µs)",
            fmt(seq_cpu_us["on"]),
            fmt(seq_cpu_us["off"]),
            added(seq_cpu_us["on"], seq_cpu_us["off"]),
        ]
    )
    rows.append(
        [
            f"throughput c={args.concurrency} (req/s)",
            fmt(mean_rps["on"]),
            fmt(mean_rps["off"]),
            added(mean_rps["on"], mean_rps["off"]),
        ]
    )
    rows.append(
        [
            f"server CPU per invoke, c={args.concurrency} (µs)",
            fmt(mean_cpu["on"]),
            fmt(mean_cpu["off"]),
            added(mean_cpu["on"], mean_cpu["off"]),
        ]
    )
    print()
    print_table(
        f"Warm invoke with hooks on vs off ({args.memory} MB, {len(lats['on'])} sequential "
        f"invokes each, {args.rounds} alternating rounds)",
        ["measure", "hooks on", "hooks off", "added"],
        rows,
    )
    print(
        f"\nper-round p50 added (on vs off, interleaved request by request): {', '.join(f'{x:+.1f} %' for x in paired)}"
    )
    print(
        f"Metrics.observe in-process: {hook['observe_ns'] / 1000:.2f} µs per invocation "
        f"({hook['observe_ns'] / 1e6 / float(seq['off']['p50_ms']) * 100:.1f} % of the hooks-off p50)"
    )
    if traces is not None:
        print(
            f"TraceRecorder in-process: record {traces['record_us']:.2f} µs on the event loop + "
            f"flush {traces['flush_us']:.2f} µs of CPU per invocation on its thread"
        )
    print(
        f"target: hooks add ≤ 5 % to the warm invoke p50 — {'met' if paired_median <= 5 else 'NOT met'} "
        f"(median of per-round differences {paired_median:+.1f} %)"
    )
    if problems:
        print(f"\n{len(problems)} problems, e.g.:", *problems[:5], sep="\n  ")
    if args.breakdown:
        parts = breakdown(args)
        results["breakdown"] = parts
        base = parts["none"]
        print()
        print_table(
            f"Which hook costs what: closed loop at concurrency {args.concurrency}, "
            f"{args.rounds} alternating rounds of {args.duration}s (medians)",
            ["hooks", "req/s", "vs none", "server CPU per invoke (µs)", "vs none"],
            [
                [
                    mode,
                    fmt(part["rps_median"]),
                    added(part["rps_median"], base["rps_median"]),
                    fmt(part["cpu_us_median"]),
                    added(part["cpu_us_median"], base["cpu_us_median"]),
                ]
                for mode, part in parts.items()
            ],
        )
    path = write_results("hooks_cost", results, argv)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
