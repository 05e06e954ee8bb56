"""The Celery side of bench/async_throughput.py: the same no-op work as Ember's handlers.

Run by `celery -A async_celery_tasks worker` (the benchmark starts it) with BENCH_REDIS_URL
and BENCH_STAMP_DIR in the environment. The benchmark's producers send by name
(`app.send_task("async_celery_tasks.noop", ...)`), as `noop.delay()` would.

Acknowledged late (after the task ran), so a worker killed mid-task does not lose it: the
closest Celery gets to Ember's at-least-once delivery. No result backend (Ember's Event
invocations return nothing to the caller either).

* `noop(n)` does nothing but count itself done (INCR): how the benchmark sees that all ran.
* `stamp(event_id)` records time.time() the moment it starts, appending `<id> <time>` to a
  file per worker process.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STAMP_DIR = os.environ.get("BENCH_STAMP_DIR", "/tmp")
DONE_KEY = "bench:done"


def configure(app: Celery) -> Celery:
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = configure(Celery("async_celery_tasks", broker=URL))
_counter = redis.Redis.from_url(URL)
_stamps: int | None = None


def _stamp_fd() -> int:
    global _stamps
    if _stamps is None:
        path = os.path.join(STAMP_DIR, f"celery-{os.getpid()}.txt")
        _stamps = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return _stamps


@app.task(name="async_celery_tasks.noop")
def noop(n: int) -> None:
    _counter.incr(DONE_KEY)


@app.task(name="async_celery_tasks.stamp")
def stamp(event_id: str) -> None:
    started = time.time()
    os.write(_stamp_fd(), f"{event_id} {started!r}\n".encode())
