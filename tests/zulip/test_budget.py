"""The bot's rate budget is one bucket in PostgreSQL, shared by every process."""

from __future__ import annotations

import time

from flask import Flask

from app.db import db
from app.zulip.budget import BURST, RateBudget


def test_two_processes_share_one_bucket(app: Flask) -> None:
    first = RateBudget(db.engine, "zulip:shared@example.com", per_minute=60)
    second = RateBudget(db.engine, "zulip:shared@example.com", per_minute=60)
    started = time.monotonic()
    for n in range(int(BURST)):
        assert (first if n % 2 else second).acquire()
    assert time.monotonic() - started < 1.0  # the burst is free
    assert second.acquire()  # the bucket is empty: this one waits for a refill (1 per second)
    assert 0.7 < time.monotonic() - started < 3.0


def test_a_429_stops_every_caller_until_retry_after(app: Flask) -> None:
    first = RateBudget(db.engine, "zulip:blocked@example.com", per_minute=6000)
    second = RateBudget(db.engine, "zulip:blocked@example.com", per_minute=6000)
    assert first.acquire()
    first.block_for(1.5)
    started = time.monotonic()
    assert second.acquire()
    assert time.monotonic() - started >= 1.3


def test_server_headers_correct_the_bucket(app: Flask) -> None:
    budget = RateBudget(db.engine, "zulip:headers@example.com", per_minute=6000)
    budget.observe(remaining=0, reset_in=1.0)
    started = time.monotonic()
    assert budget.acquire()
    assert time.monotonic() - started >= 0.8


def test_stopping_ends_the_wait(app: Flask) -> None:
    stopping = {"now": False}
    budget = RateBudget(db.engine, "zulip:stop@example.com", per_minute=60, stopping=lambda: stopping["now"])
    budget.block_for(60)
    stopping["now"] = True
    assert budget.acquire() is False
