"""The installation's request budget, as one process spends it: GitHub's answers, a token bucket, pauses.

GitHub gives an App's installation 5 000 requests an hour (LESSONBOT_GITHUB_REQUESTS_PER_HOUR);
a conditional GET answered 304 costs nothing. Every other answer takes a token from a bucket
that refills at the budget less a margin (kept for the students' own `check`, webhooks and
repository creation), so polling alone never spends the hour's budget. Independently, the
answers themselves are read: when GitHub says the budget is nearly gone (`X-RateLimit-Remaining`
below the margin, shared by every process of the installation) or answers a secondary limit
(403/429 with `Retry-After`), every GitHub read pauses until the time GitHub named. A pause is
not the student's failure: the poller moves the run to after the pause without counting it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import timedelta

MARGIN = 0.1           # a tenth of the budget is left to what is not polling
BURST_SECONDS = 60.0   # the bucket holds a minute's worth of answers
DEFAULT_PAUSE = 60.0   # GitHub's advice when an answer names no time


class Paused(Exception):
    """GitHub's budget is spent or GitHub asked us to wait: no request is made until ``until`` (epoch seconds)."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(f"GitHub requests paused for {max(until - time.time(), 0):.0f} s: {reason}")
        self.until, self.reason = until, reason

    @property
    def retry_after(self) -> timedelta:
        return timedelta(seconds=max(self.until - time.time(), 0.0))


class Budget:
    """A process's share of the installation's hourly budget (thread-safe)."""

    def __init__(self, requests_per_hour: int, margin: float = MARGIN) -> None:
        self.requests_per_hour = requests_per_hour
        self.margin = margin
        self.refill_per_second = requests_per_hour * (1 - margin) / 3600
        self.capacity = max(1.0, self.refill_per_second * BURST_SECONDS)
        self._tokens = self.capacity
        self._refilled_at = time.monotonic()
        self.paused_until = 0.0
        self.pause_reason = ""
        self.charged = 0
        self.free = 0
        self._lock = threading.Lock()

    def admit(self, *, token: bool) -> None:
        """Raise Paused if no request may go now; ``token``: the request also needs a token (a polling read)."""
        with self._lock:
            now = time.time()
            if now < self.paused_until:
                raise Paused(self.paused_until, self.pause_reason)
            if token and self._refill() < 1.0:  # every read waits for the next token, the poller's claims too
                self.paused_until = now + (1.0 - self._tokens) / self.refill_per_second
                self.pause_reason = f"the {self.requests_per_hour}/hour budget (less {self.margin:.0%}) is spent"
                raise Paused(self.paused_until, self.pause_reason)

    def charge(self, status: int) -> None:
        """Count an answer: a 304 is free, any other takes a token."""
        with self._lock:
            if status == 304:
                self.free += 1
                return
            self.charged += 1
            self._refill()
            self._tokens -= 1.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause until GitHub's reset when its `X-RateLimit-Remaining` falls below the margin of its limit."""
        try:
            remaining = int(headers["x-ratelimit-remaining"])
            limit = int(headers.get("x-ratelimit-limit", self.requests_per_hour))
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return
        if remaining <= limit * self.margin:
            self.pause(reset, f"GitHub's rate limit: {remaining} of {limit} left until the reset")

    def pause(self, until: float, reason: str) -> None:
        with self._lock:
            if until > self.paused_until:
                self.paused_until, self.pause_reason = until, reason

    def pause_for(self, retry_after: timedelta | None, reason: str) -> None:
        seconds = retry_after.total_seconds() if retry_after is not None else DEFAULT_PAUSE
        self.pause(time.time() + max(seconds, 1.0), reason)

    def _refill(self) -> float:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._refilled_at) * self.refill_per_second)
        self._refilled_at = now
        return self._tokens
