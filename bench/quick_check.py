"""What the start-time `PRAGMA quick_check` costs: a logs database of N MB (real log rows, as
`observe/logs.py` stores them) is built once per size and checked `--repeat` times, cold and
warm page cache (cold: the file's pages dropped with posix_fadvise DONTNEED first).

    .venv/bin/python bench/quick_check.py --sizes 10,100,300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ember.observe.logs import write_batches
from ember.store.data_files import check_at_start
from ember.store.sqlite import connect, migrate


def build(path: Path, megabytes: int) -> None:
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    migrate(conn, "logs")
    conn.execute("COMMIT")
    line = "START RequestId: 0f1e2d3c Version: $LATEST " + "x" * 150
    now = int(time.time() * 1000)
    seq = 0
    while (
        path.stat().st_size
        + (
            path.with_name(path.name + "-wal").stat().st_size
            if path.with_name(path.name + "-wal").exists()
            else 0
        )
        < megabytes << 20
    ):
        batches = [
            (
                seq + i,
                f"/aws/lambda/f{i % 20}",
                f"2026/01/01/[$LATEST]{i % 200}",
                [(now + j, line) for j in range(50)],
            )
            for i in range(200)
        ]
        seq += 200
        write_batches(conn, batches)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| logs.sqlite3 | cold cache (median) | warm cache (median) |\n|---|---|---|")
    for megabytes in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            for name in ("ember.sqlite3", "queue.sqlite3", "metrics.sqlite3", "traces.sqlite3"):
                connect(data_dir / name).close()
            build(data_dir / "logs.sqlite3", megabytes)
            size = (data_dir / "logs.sqlite3").stat().st_size
            cold, warm = [], []
            for _ in range(args.repeat):
                drop_cache(data_dir / "logs.sqlite3")
                cold.append(check_at_start(data_dir).checked["logs.sqlite3"])
                warm.append(check_at_start(data_dir).checked["logs.sqlite3"])
            print(
                f"| {size / 2**20:.0f} MB | {statistics.median(cold) * 1000:.0f} ms | {statistics.median(warm) * 1000:.0f} ms |"
            )


if __name__ == "__main__":
    main()
