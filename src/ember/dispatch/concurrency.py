"""Account-level concurrency: how many invocations may run at once (Lambda's 1000 default)."""

from __future__ import annotations

from ember.errors import TooManyRequests


class ConcurrencyLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def acquire(self) -> None:
        """Take a slot or raise Lambda's 429 (callers retry; nothing is queued)."""
        if self.in_flight >= self.limit:
            raise TooManyRequests("Rate Exceeded.", Reason="ConcurrentInvocationLimitExceeded")
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
