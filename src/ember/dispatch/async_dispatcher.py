"""Asynchronous invocations: accept durably, run soon, retry with back-off, then destinations.

Accepted events live in the EventQueue (on disk) until they are finished; this dispatcher keeps
the scheduling state in memory (rebuilt from the queue at start-up): a ready list per function
served round-robin, so one function's backlog cannot starve another's, and a heap of events
waiting for their retry time. Attempts run within the account's concurrency; an event that
meets throttling waits and is tried again without losing an attempt.

Delivery is at least once: an event whose attempt was running when the server stopped runs
again after the restart, and so does one whose success was not yet recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from ember.dispatch.event_queue import EventQueue, NewEvent, QueuedEvent
from ember.dispatch.invoker import Invoker, InvokeRequest, InvokeResult
from ember.errors import (
    EmberError,
    ResourceNotFound,
    ServiceError,
    StorageUnavailable,
    TooManyRequests,
)
from ember.functions.event_configs import AsyncPolicy, EventConfigService, Target
from ember.functions.service import FunctionService

log = logging.getLogger(__name__)

THROTTLE_BACKOFF_S = 0.05
STORAGE_BACKOFF_S = 1.0  # an attempt that found no room on the host's disk waits this long
EXPIRY_SWEEP_S = 1.0  # how often waiting events are checked for their maximum age
MIN_EVENT_AGE_S = 60  # the smallest MaximumEventAgeInSeconds there is


@dataclass
class FunctionQueueStats:
    queued: int = 0
    oldest_age_s: float = 0.0
    in_flight: int = 0
    retries: int = 0
    failures: int = 0
    expired: int = 0
    succeeded: int = 0


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _json_or_text(data: bytes) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode(errors="replace")


class _Slot:
    """One attempt's hold on the dispatcher: starting (launched, not yet invoking), then one of
    the max_in_flight slots until the function has run. Each step is undone exactly once."""

    __slots__ = ("dispatcher", "function", "is_held", "is_starting")

    def __init__(self, dispatcher: AsyncDispatcher, function: str) -> None:
        self.dispatcher = dispatcher
        self.function = function
        self.is_starting = True
        self.is_held = True

    def running(self) -> None:
        if self.is_starting:
            self.is_starting = False
            d = self.dispatcher
            d.starting -= 1
            left = d.starting_by[self.function] - 1
            if left:
                d.starting_by[self.function] = left
            else:
                del d.starting_by[self.function]

    def release(self) -> None:
        self.running()
        if self.is_held:
            self.is_held = False
            d = self.dispatcher
            d.active -= 1
            d.in_flight[self.function] -= 1
            if not d.in_flight[self.function]:
                del d.in_flight[self.function]
            d._wake.set()


class AsyncDispatcher:
    def __init__(
        self,
        queue: EventQueue,
        invoker: Invoker,
        functions: FunctionService,
        configs: EventConfigService,
        max_in_flight: int,
        retry_base_s: float,
    ) -> None:
        self.queue = queue
        self.invoker = invoker
        self.functions = functions
        self.configs = configs
        self.max_in_flight = max_in_flight
        self.retry_base_s = retry_base_s
        self.ready: dict[str, deque[QueuedEvent]] = {}
        self.turns: deque[str] = deque()  # functions with ready events, in round-robin order
        self.delayed: list[tuple[float, int, QueuedEvent]] = []
        self.in_flight: dict[str, int] = {}
        self.active = 0  # attempts holding one of the max_in_flight slots
        self.starting = 0  # of those, launched but not yet counted by the limiter
        self.starting_by: dict[str, int] = {}  # the same, per function
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        # (function, "OnSuccess" | "OnFailure") -> invocation records sent (for /metrics)
        self.destination_deliveries: dict[tuple[str, str], int] = {}

    # -- accepting -----------------------------------------------------------------------

    async def submit(
        self, function: str, qualifier: str | None, payload: bytes, trace_id: str | None
    ) -> QueuedEvent:
        """Store the event durably, then schedule it. Raises if it could not be stored."""
        event = NewEvent(str(uuid.uuid4()), function, qualifier, payload, trace_id)
        try:
            stored = await self.queue.enqueue(event)
        except EmberError:  # already says what went wrong (disk full, a data file lost)
            log.exception("could not store an asynchronous event for %s", function)
            raise
        except Exception as exc:
            log.exception("could not store an asynchronous event for %s", function)
            raise ServiceError(f"Ember could not store the event: {exc}") from exc
        self._schedule(stored)
        return stored

    def _schedule(self, event: QueuedEvent) -> None:
        if event.visible_at <= time.time():
            self._make_ready(event)
            self._wake.set()
        else:
            self._delay(event, event.visible_at)

    def _delay(self, event: QueuedEvent, until: float) -> None:
        """Run `event` again at `until` (and wake the loop, which may be sleeping without a
        deadline when nothing else waits)."""
        heapq.heappush(self.delayed, (until, next(self._seq), event))
        self._wake.set()

    def _make_ready(self, event: QueuedEvent) -> None:
        ready = self.ready.get(event.function)
        if ready is None:
            ready = self.ready[event.function] = deque()
        if not ready:
            self.turns.append(event.function)
        ready.append(event)

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        for event in self.queue.load():
            self._schedule(event)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for attempt in list(self._attempts):
            attempt.cancel()

    async def _run(self) -> None:
        swept_at = 0.0
        while True:
            now = time.time()
            while self.delayed and self.delayed[0][0] <= now:
                self._make_ready(heapq.heappop(self.delayed)[2])
            if now - swept_at >= EXPIRY_SWEEP_S:
                swept_at = now
                self._expire_waiting(now)
            blocked = 0  # functions in a row without capacity (their reservation is full)
            while self.turns and self.active < self.max_in_flight and blocked < len(self.turns):
                function = self.turns[0]
                if not self._capacity(function):
                    self.turns.rotate(-1)
                    blocked += 1
                    continue
                blocked = 0
                self.turns.popleft()
                ready = self.ready[function]
                event = ready.popleft()
                if ready:
                    self.turns.append(function)
                else:
                    del self.ready[function]
                self._launch(event)
            self._wake.clear()
            timeout = None
            if self.delayed:
                timeout = max(0.0, self.delayed[0][0] - time.time())
            if self.turns:  # waiting for capacity: look again soon
                timeout = min(
                    timeout if timeout is not None else THROTTLE_BACKOFF_S, THROTTLE_BACKOFF_S
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _expire_waiting(self, now: float) -> None:
        """Events that cannot start (their function has no capacity, e.g. a reservation of 0)
        still expire on time: each function's oldest ready events are checked against their
        MaximumEventAgeInSeconds and sent down the failure path."""
        for function in list(self.ready):
            ready = self.ready[function]
            while ready and now - ready[0].enqueued_at > MIN_EVENT_AGE_S:
                event = ready[0]
                try:
                    policy = self.configs.policy(event.function, event.qualifier)
                except EmberError:
                    policy = AsyncPolicy()
                if now - event.enqueued_at <= policy.max_age_s:
                    break
                ready.popleft()
                task = asyncio.get_running_loop().create_task(self._expire(event, policy))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)
            if not ready:
                del self.ready[function]
                with contextlib.suppress(ValueError):
                    self.turns.remove(function)

    async def _expire(self, event: QueuedEvent, policy: AsyncPolicy) -> None:
        payload = self.queue.payload(event.id)
        if payload is not None:
            await self._fail(event, policy, "EventAgeExceeded", payload, None)

    def _capacity(self, function: str) -> bool:
        """Room for `function` in the account's concurrency and its own reservation, counting
        attempts launched but not yet running (so a full account or reservation does not launch
        a herd of attempts only to throttle them)."""
        limiter = self.invoker.limiter
        if limiter.in_flight + self.starting >= limiter.limit:
            return False
        return limiter.has_capacity(function, self.starting_by.get(function, 0))

    def _launch(self, event: QueuedEvent) -> None:
        self.active += 1
        self.starting += 1
        self.starting_by[event.function] = self.starting_by.get(event.function, 0) + 1
        self.in_flight[event.function] = self.in_flight.get(event.function, 0) + 1
        slot = _Slot(self, event.function)
        task = asyncio.get_running_loop().create_task(self._attempt(event, slot))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    # -- one attempt ---------------------------------------------------------------------

    async def _attempt(self, event: QueuedEvent, slot: _Slot) -> None:
        try:
            await self._try(event, slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "asynchronous event %s: unexpected failure; it will run again", event.request_id
            )
            self._delay(event, time.time() + self.retry_base_s)
        finally:
            slot.release()

    async def _try(self, event: QueuedEvent, slot: _Slot) -> None:
        try:
            policy = self.configs.policy(event.function, event.qualifier)
        except EmberError:
            policy = AsyncPolicy()
        payload = self.queue.payload(event.id)
        if payload is None:  # already finished (a duplicate schedule): nothing to do
            return
        if time.time() - event.enqueued_at > policy.max_age_s:
            await self._fail(event, policy, "EventAgeExceeded", payload, None)
            return
        request = InvokeRequest(
            event.function,
            event.qualifier,
            payload,
            trace_id=event.trace_id,
            request_id=event.request_id,
            invocation_type="Event",
            enqueued_at=event.enqueued_at,
        )
        # invoke() takes its concurrency slot before its first await: from here on the
        # attempt counts in the limiter, no longer as starting.
        slot.running()
        try:
            result = await self.invoker.invoke(request)
        except TooManyRequests:
            self._delay(event, time.time() + THROTTLE_BACKOFF_S)
            return
        except StorageUnavailable as exc:
            # The host has no room to start an instance now (e.g. for its /tmp): like a
            # throttle, the attempt waits and is not counted.
            log.warning(
                "asynchronous event %s: %s; it will run again", event.request_id, exc.message
            )
            self._delay(event, time.time() + STORAGE_BACKOFF_S)
            return
        except ResourceNotFound:
            log.warning(
                "asynchronous event %s: %s no longer exists; dropped",
                event.request_id,
                event.function,
            )
            await self.queue.complete(event, "failed", [])
            return
        except ServiceError:
            result = None
        # The function has run: its slot goes to the next event while this one's outcome is
        # recorded (waiting for the log writer and the queue's fsync must not hold up others).
        slot.release()
        event.attempts += 1
        if result is not None:
            # An event is only marked done once the logs of its attempt are stored.
            await self.invoker.logs.stored(result.log_seq)
        if result is not None and not result.function_error:
            followups = self._destination(policy.on_success, event, "Success", payload, result)
            for stored in await self.queue.complete(event, "succeeded", followups):
                self._schedule(stored)
            return
        if event.attempts > policy.max_retries:
            await self._fail(event, policy, "RetriesExhausted", payload, result)
            return
        retry_at = time.time() + self.retry_base_s * event.attempts
        await self.queue.retry_later(event, retry_at)
        event.visible_at = retry_at
        self._delay(event, retry_at)

    async def _fail(
        self,
        event: QueuedEvent,
        policy: AsyncPolicy,
        condition: str,
        payload: bytes,
        result: InvokeResult | None,
    ) -> None:
        followups = self._destination(policy.on_failure, event, condition, payload, result)
        outcome = "expired" if condition == "EventAgeExceeded" else "failed"
        log.info("asynchronous event %s for %s: %s", event.request_id, event.function, condition)
        for stored in await self.queue.complete(event, outcome, followups):
            self._schedule(stored)

    def _destination(
        self,
        target: Target | None,
        event: QueuedEvent,
        condition: str,
        payload: bytes,
        result: InvokeResult | None,
    ) -> list[NewEvent]:
        if target is None:
            return []
        kind = (event.function, "OnSuccess" if condition == "Success" else "OnFailure")
        self.destination_deliveries[kind] = self.destination_deliveries.get(kind, 0) + 1
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": self.functions.arn(event.function, event.qualifier or "$LATEST"),
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": _json_or_text(payload),
        }
        if result is not None:
            context: dict[str, Any] = {
                "statusCode": 200,
                "executedVersion": result.executed_version,
            }
            if result.function_error:
                context["functionError"] = "Unhandled"
            record["responseContext"] = context
            record["responsePayload"] = _json_or_text(result.payload)
        # The destination's invocation joins the trace beneath the attempt that sent it.
        trace = result.trace_id if result is not None and result.trace_id else event.trace_id
        return [
            NewEvent(
                str(uuid.uuid4()), target.function, target.qualifier, orjson.dumps(record), trace
            )
        ]

    # -- what `ember queue` shows --------------------------------------------------------

    def stats(self) -> dict[str, FunctionQueueStats]:
        now = time.time()
        table: dict[str, FunctionQueueStats] = {}
        waiting = [e for events in self.ready.values() for e in events] + [
            e for _, _, e in self.delayed
        ]
        for event in waiting:
            row = table.setdefault(event.function, FunctionQueueStats())
            row.queued += 1
            row.oldest_age_s = max(row.oldest_age_s, now - event.enqueued_at)
        for function, count in self.in_flight.items():
            table.setdefault(function, FunctionQueueStats()).in_flight = count
        for function, counters in self.queue.stats().items():
            row = table.setdefault(function, FunctionQueueStats())
            row.retries, row.failures, row.expired = (
                counters.retried,
                counters.failed,
                counters.expired,
            )
            row.succeeded = counters.succeeded
        return table
