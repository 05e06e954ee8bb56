"""Hostile functions against the API relay: does the server survive, and are its fds released?

Starts `ember server`, deploys `--functions` copies of tests/integration/relay_attacker.py
(1769 MB, so the CPU quota does not slow the attack) and invokes them all at once, each running
every pattern (or `--patterns`) for `--seconds` each, `--rounds` times. Prints, per round,
whether the server is still alive, its descriptor count (`/proc/<pid>/fd`) and RSS before and
after, /health, and what the attackers did; then whether CreateFunction + Invoke still work.

Run it against an older tree to compare (see bench/README.md):
`git archive <rev> src | tar -x -C /tmp/snap && PYTHONPATH=/tmp/snap/src .venv/bin/python
bench/relay_attack.py`.

Usage: .venv/bin/python bench/relay_attack.py [--functions 4] [--seconds 1] [--rounds 3]
                                              [--patterns connect_close,half_close,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import EmberServer, make_zip

ATTACKER = Path(__file__).resolve().parent.parent / "tests" / "integration" / "relay_attacker.py"


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def health(endpoint: str) -> str:
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=5) as r:
            return str(r.status)
    except OSError as exc:
        return f"failed: {exc}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--functions", type=int, default=4)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--patterns", default="")
    p.add_argument("--keep", action="store_true", help="'hold' leaves its sockets open")
    args = p.parse_args(argv)
    event: dict[str, Any] = {"seconds": args.seconds, "keep": args.keep}
    if args.patterns:
        event["patterns"] = args.patterns.split(",")
    with EmberServer(keep_log_as="relay_attack-server.log") as server:
        assert server.process is not None
        pid = server.process.pid
        lam = server.lambda_client()
        code = make_zip({"app.py": ATTACKER.read_text()})
        names = [f"attacker{i}" for i in range(args.functions)]
        for name in names:
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="app.handler",
                Code={"ZipFile": code},
                MemorySize=1769,
                Timeout=300,
            )
            lam.invoke(FunctionName=name, Payload=json.dumps({"patterns": []}))  # warm
        time.sleep(0.5)
        first = fd_count(pid), rss_mb(pid)
        print(f"warm, before any attack: fds {first[0]}, RSS {first[1]:.1f} MB", flush=True)
        crashed = False
        for round_ in range(1, args.rounds + 1):
            before = fd_count(pid), rss_mb(pid)

            def attack(name: str) -> str:
                try:
                    r = lam.invoke(FunctionName=name, Payload=json.dumps(event))
                    return str(r["Payload"].read()[:600], "utf-8", "replace")
                except Exception as exc:  # the server died, or answered nonsense
                    return f"{type(exc).__name__}: {exc}"

            t0 = time.monotonic()
            with ThreadPoolExecutor(len(names)) as pool:
                results = list(pool.map(attack, names))
            took = time.monotonic() - t0
            time.sleep(1.0)
            if server.process.poll() is not None:
                print(
                    f"round {round_}: SERVER DIED (status {server.process.returncode}) after "
                    f"{took:.1f}s",
                    flush=True,
                )
                print(results[0][:300])
                crashed = True
                break
            after = fd_count(pid), rss_mb(pid)
            print(
                f"round {round_} ({took:.1f}s): fds {before[0]} -> {after[0]}, RSS "
                f"{before[1]:.1f} -> {after[1]:.1f} MB, /health {health(server.endpoint)}",
                flush=True,
            )
            for name, result in zip(names, results, strict=True):
                print(f"  {name}: {result[:400]}")
        if not crashed:
            lam.create_function(
                FunctionName="after",
                Runtime="python3.12",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="app.handler",
                Code={"ZipFile": code},
                Timeout=30,
            )
            reply = lam.invoke(FunctionName="after", Payload=json.dumps({"patterns": []}))
            print(
                f"after the attacks: CreateFunction + Invoke -> {reply['StatusCode']} "
                f"{reply['Payload'].read()!r}"
            )
            for name in names:
                lam.delete_function(FunctionName=name)
            time.sleep(1.0)
            print(f"attackers deleted: fds {fd_count(pid)}, RSS {rss_mb(pid):.1f} MB")
        tail = server.log()[-2000:]
    if crashed:
        print("server log tail:\n" + tail)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
