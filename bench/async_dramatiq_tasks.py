"""The Dramatiq side of bench/async_throughput.py: the same no-op work as Ember's handlers.

Run by `dramatiq async_dramatiq_tasks` (the benchmark starts it) with BENCH_REDIS_URL and
BENCH_STAMP_DIR in the environment. The benchmark's producers build the same messages
themselves (actor names `noop` and `stamp`, queue `default`), as `actor.send()` would.

* `noop(n)` does nothing but count itself done (INCR), which is how the benchmark sees that
  every message ran (Ember counts finished events in its own queue statistics).
* `stamp(event_id)` records time.time() the moment it starts, appending `<id> <time>` to a
  file per worker process (one O_APPEND write per line: safe across threads).
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STAMP_DIR = os.environ.get("BENCH_STAMP_DIR", "/tmp")
DONE_KEY = "bench:done"

dramatiq.set_broker(RedisBroker(url=URL))
_counter = redis.Redis.from_url(URL)
_stamps: int | None = None


def _stamp_fd() -> int:
    global _stamps
    if _stamps is None:
        path = os.path.join(STAMP_DIR, f"dramatiq-{os.getpid()}.txt")
        _stamps = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return _stamps


@dramatiq.actor(queue_name="default")
def noop(n: int) -> None:
    _counter.incr(DONE_KEY)


@dramatiq.actor(queue_name="default")
def stamp(event_id: str) -> None:
    started = time.time()
    os.write(_stamp_fd(), f"{event_id} {started!r}\n".encode())
