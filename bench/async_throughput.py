"""Durable asynchronous invocations: Event throughput end to end, and enqueue → handler start latency.

Ember (`InvocationType: Event`, a 202 only after the event is fsync'd into its SQLite queue) is
measured beside the background-worker stacks teams use instead, on the same machine in the
same run, each with an equivalent no-op task:

  * Dramatiq with its Redis broker (`dramatiq` worker, default 2 processes x 8 threads here)
  * Celery with Redis (prefork worker, concurrency = CPUs, acks_late, no result backend)

Redis 7 from Debian runs on a free port with `--save '' --appendonly yes` and
`--appendfsync always` (every accepted message is fsync'd before the reply, as Ember's 202 is)
and, for comparison, `--appendfsync everysec` (up to a second of accepted work can be lost).

Two numbers per system:
  1. throughput: N events of a no-op handler sent by C concurrent clients (raw keep-alive
     HTTP/1.1 to Ember, the libraries' own producers to Redis); timed from the first send until
     all have run. Ember: its queue statistics (GET /_ember/async, "succeeded"); the baselines:
     the task INCRs a Redis counter. Both are polled every 50 ms.
  2. latency: events sent one at a time at a modest rate (so nothing queues up); the client
     records time.time() just before sending, the handler records time.time() when it starts
     (Ember: a log line read back from the server's log store; baselines: a line in a file).

Usage: .venv/bin/python bench/async_throughput.py [--quick] [--n 10000] [--concurrency 16]
           [--latency-n 2000] [--rate 200] [--systems ember,dramatiq,celery]
           [--fsync always,everysec] [--memory 128]
Writes bench/results/async_throughput.json (-<N>mb with a non-default --memory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common import (
    BENCH_DIR,
    INVOKE_PATH,
    EmberServer,
    HttpClient,
    build_request,
    fmt,
    free_port,
    make_zip,
    percentile,
    print_table,
    ratio,
    scan_log_for_problems,
    stop_process,
    warn_if_busy,
    write_results,
)

NOOP_SOURCE = "def handler(event, context):\n    return None\n"
STAMP_SOURCE = (
    "import time\n\n"
    "def handler(event, context):\n"
    "    started = time.time()\n"
    "    print('STARTED %s %r' % (event['id'], started))\n"
)
POLL_S = 0.05


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run (n=2000, 300 latency samples at 100/s, fsync=always only)",
    )
    p.add_argument("--n", type=int, default=None, help="events for the throughput run (10000)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent senders (16)")
    p.add_argument("--latency-n", type=int, default=None, help="latency samples (2000)")
    p.add_argument("--rate", type=float, default=None, help="events/s for the latency run (200)")
    p.add_argument("--systems", default="ember,dramatiq,celery")
    p.add_argument("--fsync", default=None, help="Redis appendfsync modes (always,everysec)")
    p.add_argument(
        "--memory",
        type=int,
        default=128,
        help="MemorySize of Ember's functions (128; 1769 = one full vCPU each)",
    )
    args = p.parse_args(argv)
    args.n = args.n or (2000 if args.quick else 10_000)
    args.latency_n = args.latency_n or (300 if args.quick else 2000)
    args.rate = args.rate or (100.0 if args.quick else 200.0)
    args.fsync = args.fsync or ("always" if args.quick else "always,everysec")
    return args


# --------------------------------------------------------------------------- what is measured


class Target(Protocol):
    label: str

    def noop_sender(self) -> Callable[[int], bool]: ...  # one per thread; True = accepted

    def stamp_sender(self) -> Callable[[str], bool]: ...

    def done(self) -> int: ...  # no-op events finished so far

    def stamps(self) -> dict[str, float]: ...  # event id -> handler start (time.time())


def _machine_jiffies() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@dataclass
class Throughput:
    n: int
    concurrency: int
    accepted: int
    errors: list[str]
    accept_s: float  # first send → last acceptance
    total_s: float  # first send → all ran
    client_cpu_s: float  # the senders (this process) while sending
    machine_busy_cores: float  # every process on the machine, first send → all ran

    @property
    def events_per_s(self) -> float:
        return self.accepted / self.total_s if self.total_s > 0 else 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.accept_s if self.accept_s > 0 else 0.0


@dataclass
class Latency:
    n: int
    rate: float
    latencies_ms: list[float]
    errors: list[str]

    def summary(self) -> dict[str, float]:
        values = self.latencies_ms
        return {
            "n": len(values),
            "p50_ms": percentile(values, 50),
            "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values) if values else float("nan"),
            "mean_ms": sum(values) / len(values) if values else float("nan"),
        }


def wait_done(target: Target, goal: int, timeout: float) -> float | None:
    """Poll until `goal` no-op events have finished; returns the perf_counter of that moment."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if target.done() >= goal:
            return time.perf_counter()
        time.sleep(POLL_S)
    return None


def run_throughput(target: Target, n: int, concurrency: int, timeout: float = 600.0) -> Throughput:
    base = target.done()
    senders = [target.noop_sender() for _ in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)
    accepted = [0] * concurrency
    last_accept = [0.0] * concurrency
    errors: list[str] = []

    def work(worker: int) -> None:
        send = senders[worker]
        barrier.wait()
        for i in range(worker, n, concurrency):
            try:
                if send(i):
                    accepted[worker] += 1
                    last_accept[worker] = time.perf_counter()
                else:
                    errors.append(f"event {i} refused")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > 100:
                    return

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    busy0, all0 = _machine_jiffies()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    cpu1 = time.process_time()
    total = sum(accepted)
    end = wait_done(target, base + total, timeout)
    busy1, all1 = _machine_jiffies()
    if end is None:
        raise RuntimeError(
            f"{target.label}: only {target.done() - base} of {total} events ran in {timeout:.0f}s"
        )
    cores = (os.cpu_count() or 1) * (busy1 - busy0) / (all1 - all0) if all1 > all0 else 0.0
    return Throughput(
        n, concurrency, total, errors[:20], max(last_accept) - t0, end - t0, cpu1 - cpu0, cores
    )


def run_latency(
    target: Target, n: int, rate: float, prefix: str, timeout: float = 120.0
) -> Latency:
    send = target.stamp_sender()
    sent: dict[str, float] = {}
    errors: list[str] = []
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        pause = t0 + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        event_id = f"{prefix}{i:06d}"
        at = time.time()
        try:
            if send(event_id):
                sent[event_id] = at
            else:
                errors.append(f"{event_id} refused")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    deadline = time.monotonic() + timeout
    while True:
        started = target.stamps()
        if all(i in started for i in sent) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    missing = [i for i in sent if i not in started]
    if missing:
        errors.append(f"{len(missing)} events never started, e.g. {missing[:3]}")
    values = [(started[i] - at) * 1000 for i, at in sent.items() if i in started]
    return Latency(n, rate, values, errors[:20])


# --------------------------------------------------------------------------- Ember


@dataclass
class EmberTarget:
    server: EmberServer
    memory_mb: int = 128
    label: str = "Ember (SQLite, fsync per group commit)"
    noop: str = "async-noop"
    stamp: str = "async-stamp"

    def setup(self) -> None:
        for name, source in ((self.noop, NOOP_SOURCE), (self.stamp, STAMP_SOURCE)):
            self.server.create_function(
                name, memory_mb=self.memory_mb, zip_bytes=make_zip({"app.py": source})
            )
        if self.memory_mb != 128:
            self.label = f"Ember, {self.memory_mb} MB (SQLite, fsync per group commit)"

    def _sender(self, function: str, body: Callable[[Any], bytes]) -> Callable[[Any], bool]:
        client = HttpClient(self.server.port)
        path = INVOKE_PATH.format(name=function)
        headers = {"X-Amz-Invocation-Type": "Event"}

        def send(value: Any) -> bool:
            return client.request(build_request(path, body(value), headers)).status == 202

        return send

    def noop_sender(self) -> Callable[[int], bool]:
        return self._sender(self.noop, lambda n: b'{"n": %d}' % n)

    def stamp_sender(self) -> Callable[[str], bool]:
        return self._sender(self.stamp, lambda i: json.dumps({"id": i}).encode())

    def done(self) -> int:
        with urllib.request.urlopen(self.server.endpoint + "/_ember/async", timeout=30) as r:
            table = json.load(r)
        return int(table.get(self.noop, {}).get("succeeded", 0))

    def stamps(self) -> dict[str, float]:
        conn = sqlite3.connect(self.server.data_dir / "logs.sqlite3", timeout=30)
        try:
            rows = conn.execute(
                "SELECT message FROM log_events WHERE log_group = ? AND message LIKE 'STARTED %'",
                (f"/aws/lambda/{self.stamp}",),
            ).fetchall()
        finally:
            conn.close()
        found = {}
        for (message,) in rows:
            _, event_id, at = message.split()
            found[event_id] = float(at)
        return found


# --------------------------------------------------------------------------- Redis and workers


@dataclass
class Redis:
    fsync: str
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--protected-mode",
            "no",
            "--logfile",
            str(self.root / "redis.log"),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        assert client.config_get("appendfsync")["appendfsync"] == self.fsync

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class Worker:
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=BENCH_DIR, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _stamps_from(directory: Path, prefix: str) -> dict[str, float]:
    found = {}
    for path in directory.glob(f"{prefix}-*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                found[parts[0]] = float(parts[1])
    return found


@dataclass
class DramatiqTarget:
    redis_url: str
    stamp_dir: Path
    label: str = "Dramatiq + Redis"

    def __post_init__(self) -> None:
        import redis
        from dramatiq.brokers.redis import RedisBroker

        self.broker = RedisBroker(url=self.redis_url)
        self.broker.declare_queue("default")
        self.counter = redis.Redis.from_url(self.redis_url)

    def _sender(self, actor: str) -> Callable[[Any], bool]:
        from dramatiq import Message

        def send(value: Any) -> bool:
            self.broker.enqueue(
                Message(
                    queue_name="default", actor_name=actor, args=(value,), kwargs={}, options={}
                )
            )
            return True

        return send

    def noop_sender(self) -> Callable[[int], bool]:
        return self._sender("noop")

    def stamp_sender(self) -> Callable[[str], bool]:
        return self._sender("stamp")

    def done(self) -> int:
        return int(self.counter.get("bench:done") or 0)

    def stamps(self) -> dict[str, float]:
        return _stamps_from(self.stamp_dir, "dramatiq")


@dataclass
class CeleryTarget:
    redis_url: str
    stamp_dir: Path
    label: str = "Celery + Redis"

    def __post_init__(self) -> None:
        import redis
        from celery import Celery

        from async_celery_tasks import configure

        self.app = configure(Celery("bench-producer", broker=self.redis_url))
        self.counter = redis.Redis.from_url(self.redis_url)

    def _sender(self, task: str) -> Callable[[Any], bool]:
        def send(value: Any) -> bool:
            self.app.send_task(task, args=(value,))
            return True

        return send

    def noop_sender(self) -> Callable[[int], bool]:
        return self._sender("async_celery_tasks.noop")

    def stamp_sender(self) -> Callable[[str], bool]:
        return self._sender("async_celery_tasks.stamp")

    def done(self) -> int:
        return int(self.counter.get("bench:done") or 0)

    def stamps(self) -> dict[str, float]:
        return _stamps_from(self.stamp_dir, "celery")


def worker_for(system: str, redis_url: str, stamp_dir: Path, log_path: Path) -> Worker:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_STAMP_DIR": str(stamp_dir),
        "PYTHONPATH": str(BENCH_DIR),
    }
    cpus = str(os.cpu_count() or 2)
    if system == "dramatiq":
        argv = [
            str(bin_dir / "dramatiq"),
            "async_dramatiq_tasks",
            "--processes",
            cpus,
            "--threads",
            "8",
        ]
    else:
        argv = [
            str(bin_dir / "celery"),
            "-A",
            "async_celery_tasks",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            cpus,
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ]
    return Worker(argv, env, log_path)


# --------------------------------------------------------------------------- one system


def warm_up(target: Target, concurrency: int, n: int) -> None:
    """Let every system reach its steady state first (Ember: warm instances; workers: imports,
    connections, prefetch) with the same kind of burst as the measured one."""
    run_throughput(target, n, concurrency, timeout=300)
    run_latency(target, 20, 100.0, "warm-")


def measure(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    loadavg = os.getloadavg()
    warm_up(target, args.concurrency, max(500, args.n // 5))
    throughput = run_throughput(target, args.n, args.concurrency)
    latency = run_latency(target, args.latency_n, args.rate, "lat-")
    result = {
        "label": target.label,
        "throughput": {
            "n": throughput.n,
            "concurrency": throughput.concurrency,
            "accepted": throughput.accepted,
            "events_per_s": throughput.events_per_s,
            "accepted_per_s": throughput.accepted_per_s,
            "accept_s": throughput.accept_s,
            "total_s": throughput.total_s,
            "client_cpu_s": throughput.client_cpu_s,
            "machine_busy_cores": throughput.machine_busy_cores,
            "errors": throughput.errors,
        },
        "loadavg_before": loadavg,
        "latency": {**latency.summary(), "rate_per_s": latency.rate, "errors": latency.errors},
    }
    print(
        f"  {target.label}: {throughput.events_per_s:,.0f} events/s end to end "
        f"({throughput.accepted_per_s:,.0f}/s accepted); start latency "
        f"p50 {latency.summary()['p50_ms']:.2f} ms, p99 {latency.summary()['p99_ms']:.2f} ms",
        flush=True,
    )
    return result


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_ember(args: argparse.Namespace) -> dict[str, Any]:
    with EmberServer(
        extra_args=["--log-level", "warning"], keep_log_as="async_throughput-server.log"
    ) as server:
        target = EmberTarget(server, args.memory)
        target.setup()
        result = measure(target, args)
        problems = scan_log_for_problems(server.log())
        if problems:
            result["server_log_problems"] = problems
        return result


def run_baseline(system: str, fsync: str, args: argparse.Namespace) -> dict[str, Any]:
    with scratch(f"async-{system}-") as root:
        redis = Redis(fsync, root / "redis")
        stamp_dir = root / "stamps"
        stamp_dir.mkdir()
        redis.start()
        worker = worker_for(system, redis.url, stamp_dir, root / "worker.log")
        try:
            worker.start()
            target: Target = (
                DramatiqTarget(redis.url, stamp_dir)
                if system == "dramatiq"
                else CeleryTarget(redis.url, stamp_dir)
            )
            target.label = f"{target.label} (appendfsync {fsync})"
            result = measure(target, args)
            # Celery warns that it runs as root (the benchmark runs as root for Ember's sake).
            problems = [
                line
                for line in scan_log_for_problems(worker.log())
                if "security" not in line and "superuser" not in line
            ]
            if problems:
                result["worker_log_problems"] = problems
            return result
        finally:
            worker.stop()
            redis.stop()


# --------------------------------------------------------------------------- report


def report(results: dict[str, dict[str, Any]]) -> None:
    ember = results.get("ember")
    rows = []
    for result in results.values():
        t = result["throughput"]
        rows.append(
            [
                result["label"],
                fmt(t["events_per_s"], 0),
                fmt(t["accepted_per_s"], 0),
                fmt(t["total_s"], 2),
                fmt(t["machine_busy_cores"], 2),
                ratio(ember["throughput"]["events_per_s"], t["events_per_s"]) if ember else "-",
            ]
        )
    print_table(
        f"Durable Event throughput: {next(iter(results.values()))['throughput']['n']:,} no-op events, "
        f"{next(iter(results.values()))['throughput']['concurrency']} concurrent senders",
        ["system", "events/s (end to end)", "accepted/s", "total s", "busy cores", "Ember ÷ this"],
        rows,
    )
    rows = []
    for result in results.values():
        lat = result["latency"]
        rows.append(
            [
                result["label"],
                fmt(lat["p50_ms"]),
                fmt(lat["p90_ms"]),
                fmt(lat["p99_ms"]),
                fmt(lat["max_ms"]),
                ratio(lat["p50_ms"], ember["latency"]["p50_ms"]) if ember else "-",
            ]
        )
    first = next(iter(results.values()))["latency"]
    print_table(
        f"Enqueue → handler start latency (ms), {first['n']} events at {first['rate_per_s']:.0f}/s",
        ["system", "p50", "p90", "p99", "max", "this p50 ÷ Ember p50"],
        rows,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warn_if_busy()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: dict[str, dict[str, Any]] = {}
    print(
        f"async throughput: n={args.n} concurrency={args.concurrency} "
        f"latency n={args.latency_n} at {args.rate:.0f}/s",
        flush=True,
    )
    if "ember" in systems:
        results["ember"] = run_ember(args)
    for fsync in args.fsync.split(","):
        for system in ("dramatiq", "celery"):
            if system in systems:
                results[f"{system}-{fsync}"] = run_baseline(system, fsync, args)
    report(results)
    name = "async_throughput" if args.memory == 128 else f"async_throughput-{args.memory}mb"
    path = write_results(name, {"settings": vars(args), "systems": results}, argv)
    print(f"results written to {path}")
    failed = False
    for key, result in results.items():
        for kind in ("throughput", "latency"):
            if result[kind]["errors"]:
                failed = True
                print(f"{key} {kind} errors: {result[kind]['errors'][:5]}", file=sys.stderr)
        for kind in ("server_log_problems", "worker_log_problems"):
            if result.get(kind):
                failed = True
                print(f"{key} {kind}: {result[kind][:10]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
