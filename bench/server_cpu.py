"""Server CPU per warm invoke: the steadiest measure of a change to the invoke path.

Latency and req/s swing by 20-30 % on a shared machine; the CPU the server's main process
spends per invoke moves much less. One server (1769 MB function, so the CPU quota stays out of
the way), 2,000 sequential invokes (their p50 is printed too), then `--rounds` closed-loop runs
at `--concurrency` for `--duration` seconds each, with the main process's CPU per invoke.

To compare two trees, alternate runs of each in the same window, e.g. with a snapshot of a
commit: `git archive <rev> src | tar -x -C /tmp/snap && PYTHONPATH=/tmp/snap/src
.venv/bin/python bench/server_cpu.py --label old`, then the same without PYTHONPATH.

Usage: .venv/bin/python bench/server_cpu.py [--label NAME] [--rounds 3] [--duration 3]
                                            [--concurrency 8] [--memory 1769]
"""

from __future__ import annotations

import argparse
import sys

from common import (
    EmberServer,
    HttpClient,
    cpu_seconds,
    invoke_request,
    run_load,
    sequential,
    summarize_ms,
)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="ember")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--memory", type=int, default=1769)
    args = p.parse_args(argv)
    with EmberServer() as server:
        assert server.process is not None
        server.create_function("cpu", memory_mb=args.memory)
        raw = invoke_request("cpu")
        run_load(server.port, raw, args.concurrency, 1.0)  # scale out and warm up
        lats, errors = sequential(HttpClient(server.port), raw, 2000)
        parts = [f"sequential p50 {float(summarize_ms(lats)['p50_ms']):.3f} ms"]
        for _ in range(args.rounds):
            cpu0 = cpu_seconds(server.process.pid)
            load = run_load(server.port, raw, args.concurrency, args.duration, warmup_s=0.2)
            used = cpu_seconds(server.process.pid) - cpu0
            parts.append(f"{load.rps:,.0f} req/s, {used / max(1, load.ok) * 1e6:.0f} µs/invoke")
            errors += load.error_samples
    print(f"{args.label}: " + " | ".join(parts))
    if errors:
        print(f"{len(errors)} errors, e.g. {errors[:3]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
