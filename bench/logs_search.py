"""Searching a big log group: FilterLogEvents over 1 million Lambda-shaped lines.

    .venv/bin/python bench/logs_search.py [--lines 1000000] [--runs 3]

1. Ingestion: the lines go in through LogStore.emit (the path invocations use: a queue and a
   writer thread that commits batches), six lines per "invocation", and the rate is timed
   until flush() says everything is stored.
2. Search: `ember server` is started on that data directory and boto3's logs client runs
   FilterLogEvents through every page (what `aws logs filter-log-events` does) for a rare term,
   a 1 % term, a JSON pattern, an exclusion and a `?a ?b` pattern; and the last 10 minutes as
   `aws logs tail` asks for them. Each is run `--runs` times; the median wall time is printed,
   with the store-level search (no HTTP) beside it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from common import EmberServer, print_table
from ember.observe.filter_pattern import compile_pattern
from ember.observe.logs import LogStore

GROUP = "/aws/lambda/bench-logs"
WORDS = [
    "order",
    "payment",
    "shipping",
    "cart",
    "user",
    "session",
    "cache",
    "retry",
    "queue",
    "batch",
    "item",
    "stock",
]


def invocation_lines(rng: random.Random, n: int) -> list[str]:
    request_id = str(uuid.UUID(int=rng.getrandbits(128)))
    latency = rng.randint(1, 500)
    failed = n % 100 == 0  # 1 % of invocations fail
    rare = n % 10_000 == 0  # 0.01 %: a needle
    app = f"[INFO]\t2024-01-01T00:00:00.000Z\t{request_id}\t" + " ".join(rng.choices(WORDS, k=8))
    if failed:
        app = f"[ERROR]\t2024-01-01T00:00:00.000Z\t{request_id}\tPaymentDeclined for order {n}"
    if rare:
        app += " needle-7f3a"
    return [
        f"START RequestId: {request_id} Version: $LATEST",
        app,
        f'{{"level": "{"ERROR" if failed else "INFO"}", "latency": {latency}, "order": {{"id": {n}}}}}',
        "processing " + " ".join(rng.choices(WORDS, k=5)),
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: {latency}.00 ms\tBilled Duration: {latency} ms"
        "\tMemory Size: 128 MB\tMax Memory Used: 40 MB",
    ]


def ingest(path: Path, lines: int) -> tuple[float, int]:
    store = LogStore(path)
    rng = random.Random(7)
    invocations = lines // 6
    now = int(time.time() * 1000)
    start_ms = now - 3_600_000  # spread over the last hour
    step = 3_600_000 / invocations
    t0 = time.perf_counter()
    for n in range(invocations):
        ts = int(start_ms + n * step)
        stream = f"2024/01/01/[$LATEST]{n % 50:032x}"
        store.emit(GROUP, stream, [(ts, line) for line in invocation_lines(rng, n)])
        if n % 20_000 == 0:
            store.flush(600)  # keep the queue bounded, as real traffic would
    store.flush(600)
    took = time.perf_counter() - t0
    store.close()
    return took, invocations * 6


def logs_client(endpoint: str) -> Any:
    import boto3
    import botocore.config

    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=300),
    )


def through_api(client: Any, **params: Any) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    found = pages = 0
    for page in client.get_paginator("filter_log_events").paginate(logGroupName=GROUP, **params):
        found += len(page["events"])
        pages += 1
    return time.perf_counter() - t0, found, pages


def in_store(store: LogStore, pattern: str, start: int | None) -> float:
    compiled = compile_pattern(pattern)
    t0 = time.perf_counter()
    after = None
    while True:
        page = store.search(GROUP, compiled, start=start, after=after)
        if page.next is None:
            return time.perf_counter() - t0
        after = page.next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    server = EmberServer(keep_log_as="logs_search-server.log")
    server.data_dir.mkdir(parents=True, exist_ok=True)
    db = server.data_dir / "logs.sqlite3"
    took, lines = ingest(db, args.lines)
    print(
        f"ingested {lines:,} lines in {took:.1f} s: {lines / took:,.0f} lines/s "
        f"(database {db.stat().st_size / 1e6:,.0f} MB)"
    )

    ten_minutes_ago = int(time.time() * 1000) - 600_000
    cases: list[tuple[str, str, int | None]] = [
        ("rare term (0.01 %)", "needle-7f3a", None),
        ("term (1 %)", "PaymentDeclined", None),
        ("quoted phrase + exclusion", '"Max Memory Used: 40 MB" -"Duration: 1.00 ms"', None),
        ("?a ?b", "?needle-7f3a ?PaymentDeclined", None),
        ('JSON { $.level = "ERROR" }', '{ $.level = "ERROR" }', None),
        ("JSON { $.latency > 495 }", "{ $.latency > 495 }", None),
        ("everything, last 10 min (aws logs tail)", "", ten_minutes_ago),
    ]
    rows = []
    with server:
        client = logs_client(server.endpoint)
        store = LogStore(db)
        try:
            for label, pattern, start in cases:
                params: dict[str, Any] = {"filterPattern": pattern} if pattern else {}
                if start is not None:
                    params["startTime"] = start
                api_runs, found, pages = [], 0, 0
                for _ in range(args.runs):
                    seconds, found, pages = through_api(client, **params)
                    api_runs.append(seconds)
                store_runs = [in_store(store, pattern, start) for _ in range(args.runs)]
                rows.append(
                    [
                        label,
                        f"{found:,}",
                        str(pages),
                        f"{statistics.median(api_runs):.3f}",
                        f"{statistics.median(store_runs):.3f}",
                    ]
                )
        finally:
            store.close()
    print_table(
        f"FilterLogEvents over {lines:,} lines in one log group (50 streams), median of {args.runs}",
        ["search", "events found", "pages", "API s (boto3, all pages)", "store s (no HTTP)"],
        rows,
    )


if __name__ == "__main__":
    main()
