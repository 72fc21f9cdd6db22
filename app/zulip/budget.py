"""One rate budget for every Zulip call the bot makes, shared by all processes.

A token bucket in PostgreSQL (one row per bot): taking a token is one atomic UPDATE, so
the receiver, the dispatcher and the step checks never together exceed the
bot's limit. The server's own ``X-RateLimit-*`` headers and 429 answers correct it:
when Zulip says the window is used up, everyone waits until it resets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.metrics.registry import ZULIP_BUDGET_WAIT

log = logging.getLogger(__name__)
BURST = 10.0
WINDOW = 60.0  # Zulip's rule is (60 s, 200 requests): at most 200 in any 60 s, a sliding window
FINAL_WAIT = 5.0


def bucket_shape(per_minute: float) -> tuple[float, float]:
    """(capacity, refill per second) for a server allowing ``per_minute`` in any sliding minute.

    The bucket can give its capacity at once and then refill for a whole window, so
    capacity + refill × 60 s is the most it lets through in any minute: kept at the limit,
    it never earns a 429 by itself (with the burst taken from the rate: 5 of 200 a minute).
    """
    capacity = max(1.0, min(BURST, per_minute / 40))
    return capacity, max(per_minute - capacity, 1.0) / WINDOW


_TAKE = sa.text("""
    WITH now AS (
        SELECT LEAST(capacity, tokens + EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * refill_per_second) AS available
        FROM rate_budgets WHERE name = :name AND blocked_until <= clock_timestamp() FOR UPDATE
    )
    UPDATE rate_budgets SET tokens = now.available - LEAST(:want, FLOOR(now.available)), updated_at = clock_timestamp()
    FROM now WHERE rate_budgets.name = :name AND now.available >= 1
    RETURNING LEAST(:want, FLOOR(now.available)) AS taken
""")
_STATE = sa.text("""
    SELECT tokens + EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * refill_per_second AS tokens,
           refill_per_second, EXTRACT(EPOCH FROM blocked_until - clock_timestamp()) AS blocked_for
    FROM rate_budgets WHERE name = :name
""")
_ENSURE = sa.text("""
    INSERT INTO rate_budgets (name, tokens, capacity, refill_per_second, updated_at, blocked_until)
    VALUES (:name, :capacity, :capacity, :refill, clock_timestamp(), clock_timestamp())
    ON CONFLICT (name) DO UPDATE SET capacity = EXCLUDED.capacity, refill_per_second = EXCLUDED.refill_per_second
""")
_BLOCK = sa.text("""
    UPDATE rate_budgets SET blocked_until = GREATEST(blocked_until, clock_timestamp() + make_interval(secs => :seconds)),
                            tokens = 0, updated_at = clock_timestamp()
    WHERE name = :name
""")
_REMAINING = sa.text("""
    UPDATE rate_budgets
    SET tokens = LEAST(tokens + EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * refill_per_second, capacity, :remaining),
        updated_at = clock_timestamp()
    WHERE name = :name
""")


class RateBudget:
    """Shared budget of ``per_minute`` calls; ``acquire()`` blocks until a call may go.

    Tokens are taken from the shared bucket a few at a time and spent locally, so most
    calls cost no database round trip; a 429 drops what is held.
    """

    def __init__(self, engine: Engine, name: str, per_minute: float, *, sleep: Callable[[float], object] = time.sleep,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.engine, self.name = engine, name
        self.sleep, self.stopping = sleep, stopping
        self.held = 0
        self.lock = threading.Lock()
        # Take a few tokens per trip only when the budget is generous: near a tight limit, one at a time.
        self.batch = max(1, min(25, int(per_minute / 600)))  # 1 up to 1199 a minute; 25 from 15 000
        capacity, refill = bucket_shape(per_minute)
        with self.engine.begin() as connection:
            connection.execute(_ENSURE, {"name": name, "capacity": capacity, "refill": refill})

    def acquire(self, *, final: bool = False) -> bool:
        """Take one token, waiting as long as needed; False if the process is stopping.

        ``final``: the last call of a stopping process (deleting its event queue): it may
        wait for a token up to ``FINAL_WAIT`` seconds even while stopping.
        """
        deadline = time.monotonic() + FINAL_WAIT
        while not self.stopping() or (final and time.monotonic() < deadline):
            with self.lock:
                if self.held > 0:
                    self.held -= 1
                    return True
            with self.engine.begin() as connection:
                taken = connection.execute(_TAKE, {"name": self.name, "want": self.batch}).scalar()
                if taken:
                    with self.lock:
                        self.held += int(taken) - 1
                    return True
                state = connection.execute(_STATE, {"name": self.name}).one()
            wait = min(max(float(state.blocked_for or 0), (1 - float(state.tokens)) / float(state.refill_per_second), 0.01), 1.0)
            ZULIP_BUDGET_WAIT.inc(wait)
            self.sleep(wait)
        return False

    def block_for(self, seconds: float) -> None:
        """The server said 429: nobody calls until ``seconds`` from now."""
        log.warning("zulip rate limit hit: every caller waits %.1f s", seconds)
        with self.lock:
            self.held = 0
        with self.engine.begin() as connection:
            connection.execute(_BLOCK, {"name": self.name, "seconds": max(seconds, 0.0)})

    def observe(self, remaining: int | None, reset_in: float | None) -> None:
        """Follow the server's X-RateLimit headers: what it says is left caps what we have (it never adds:
        someone else may be calling as this bot)."""
        if remaining is None or remaining > 2 * BURST:
            return  # far from the limit: our own bucket is the tighter one
        if remaining <= 0 and reset_in is not None:
            self.block_for(reset_in)
            return
        with self.lock:
            self.held = min(self.held, remaining)
        with self.engine.begin() as connection:
            connection.execute(_REMAINING, {"name": self.name, "remaining": remaining})


class LocalBudget:
    """The same interface in one process, for SQLite (the demo) where there is no shared server."""

    def __init__(self, per_minute: float) -> None:
        self.capacity, self.refill = bucket_shape(per_minute)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.blocked_until = 0.0
        self.lock = threading.Lock()

    def _refill(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill)
        self.updated = now
        return now

    def acquire(self, *, final: bool = False) -> bool:
        while True:
            with self.lock:
                now = self._refill()
                if now >= self.blocked_until and self.tokens >= 1:
                    self.tokens -= 1
                    return True
                wait = min(max(self.blocked_until - now, (1 - self.tokens) / self.refill), 1.0)
            ZULIP_BUDGET_WAIT.inc(wait)
            time.sleep(wait)

    def block_for(self, seconds: float) -> None:
        with self.lock:
            self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)
            self.tokens = 0

    def observe(self, remaining: int | None, reset_in: float | None) -> None:
        if remaining is not None and remaining <= 0 and reset_in is not None:
            self.block_for(reset_in)
        elif remaining is not None:
            with self.lock:
                self._refill()
                self.tokens = min(self.tokens, remaining)
