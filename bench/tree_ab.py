"""A/B of two source trees on the warm invoke path, in one run.

Two `ember server`s side by side: one from this tree, one from another (`--other-src`, e.g. the
`src` of a `git archive` snapshot of a commit). Each gets the same function and the same
prebuilt Invoke request on a raw keep-alive connection (bench/common.py). Sequential invokes
are interleaved request by request (this, other, other, this, ...) in rounds, so that drift in
a shared machine's load falls on both alike; then closed-loop throughput with the server main
process's CPU per invoke, in alternating rounds. `--tail` sends `X-Amz-Log-Type: Tail`.

Usage: .venv/bin/python bench/tree_ab.py --other-src /tmp/snap/src [--n 1000] [--rounds 6]
                                         [--duration 3] [--concurrency 8] [--memory 1769] [--tail]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from statistics import median

from common import (
    EXPECTED_BODY,
    EmberServer,
    HttpClient,
    cpu_seconds,
    die_with_parent,
    invoke_request,
    run_load,
    wait_http_ok,
    warn_if_busy,
)


class TreeServer(EmberServer):
    src: str | None = None  # another tree's src directory; None: this tree

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        if self.src:
            env["PYTHONPATH"] = self.src
        argv = [
            sys.executable,
            "-m",
            "ember",
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
                env=env,
            )
        wait_http_ok(self.endpoint + "/health", self.process, timeout, "ember server", self.log)


def interleaved(
    clients: dict[str, HttpClient], raw: bytes, n: int, pids: dict[str, int] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """n invokes per server, alternating which goes first: the p50 per server, in ms, and (with
    `pids`) each server main process's CPU per invoke, in µs."""
    lats: dict[str, list[int]] = {key: [] for key in clients}
    cpu0 = {key: cpu_seconds(pid) for key, pid in (pids or {}).items()}
    keys = list(clients)
    clock = time.perf_counter_ns
    for i in range(n):
        for key in keys if i % 2 == 0 else keys[::-1]:
            t0 = clock()
            response = clients[key].request(raw)
            elapsed = clock() - t0
            if response.status != 200 or response.body != EXPECTED_BODY:
                raise RuntimeError(f"{key}: HTTP {response.status} {response.body[:200]!r}")
            lats[key].append(elapsed)
    cpu = {key: (cpu_seconds(pid) - cpu0[key]) / n * 1e6 for key, pid in (pids or {}).items()}
    return {key: median(values) / 1e6 for key, values in lats.items()}, cpu


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other-src", required=True, help="the other tree's src directory")
    p.add_argument("--n", type=int, default=1000, help="sequential invokes per round and server")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument(
        "--duration", type=float, default=3.0, help="seconds of load per server and round"
    )
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--memory", type=int, default=1769)
    p.add_argument("--tail", action="store_true", help="ask for the log tail (LogType: Tail)")
    args = p.parse_args(argv)
    warn_if_busy()
    servers = {"this": TreeServer(), "other": TreeServer()}
    servers["other"].src = args.other_src
    raw = invoke_request("ab", tail=args.tail)
    try:
        for server in servers.values():
            server.start()
            server.create_function("ab", memory_mb=args.memory)
        clients = {key: HttpClient(server.port) for key, server in servers.items()}
        interleaved(clients, raw, 300)  # warm both
        pids = {key: server.process.pid for key, server in servers.items() if server.process}
        p50: dict[str, list[float]] = {key: [] for key in servers}
        seq_cpu: dict[str, list[float]] = {key: [] for key in servers}
        for _ in range(args.rounds):
            latencies, cpus = interleaved(clients, raw, args.n, pids)
            for key, value in latencies.items():
                p50[key].append(value)
                seq_cpu[key].append(cpus[key])
        for client in clients.values():
            client.close()
        rps: dict[str, list[float]] = {key: [] for key in servers}
        cpu_us: dict[str, list[float]] = {key: [] for key in servers}
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
    finally:
        for server in servers.values():
            server.stop()
            server.cleanup()
    diffs = [(a - b) / b * 100 for a, b in zip(p50["this"], p50["other"], strict=True)]
    print(
        f"sequential p50, ms (rounds): this {[round(x, 3) for x in p50['this']]}"
        f" other {[round(x, 3) for x in p50['other']]}"
    )
    print(
        f"sequential p50 medians: this {median(p50['this']):.3f} ms, other {median(p50['other']):.3f} ms;"
        f" median of per-round differences {median(diffs):+.1f} %"
    )
    print(
        f"sequential server CPU per invoke, µs: this {median(seq_cpu['this']):.0f}"
        f" {[round(x) for x in seq_cpu['this']]}, other {median(seq_cpu['other']):.0f}"
        f" {[round(x) for x in seq_cpu['other']]}"
    )
    for key in keys:
        print(
            f"concurrency {args.concurrency}, {key}: {median(rps[key]):,.0f} req/s,"
            f" {median(cpu_us[key]):.0f} µs of server CPU per invoke"
            f" (rounds: {[round(x) for x in cpu_us[key]]})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
