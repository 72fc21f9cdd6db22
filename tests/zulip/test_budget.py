"""The bot's rate budget is one bucket in PostgreSQL, shared by every process."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from flask import Flask
from pydantic import ValidationError

from app.db import db
from app.settings import Settings
from app.zulip.budget import LocalBudget, RateBudget, bucket_shape
from app.zulip.connect import budget_for
from app.zulip.models import RateBudget as RateBudgetRow


def test_two_processes_share_one_bucket(app: Flask) -> None:
    first = RateBudget(db.engine, "zulip:shared@example.com", per_minute=400)
    second = RateBudget(db.engine, "zulip:shared@example.com", per_minute=400)
    capacity, refill = bucket_shape(400)
    started = time.monotonic()
    for n in range(int(capacity)):
        assert (first if n % 2 else second).acquire()
    assert time.monotonic() - started < 0.5  # the burst is free
    for n in range(int(refill)):  # the bucket is empty: these wait for the refill, shared
        assert (first if n % 2 else second).acquire()
    assert 0.8 < time.monotonic() - started < 2.5


@pytest.mark.parametrize("per_minute", [1, 3, 20, 60, 200, 1000, 1_000_000])
def test_the_bucket_never_lets_more_than_the_limit_through_in_any_minute(per_minute: int) -> None:
    """Zulip's limit is a sliding window: a burst plus a minute of refill must fit in it, or the budget
    itself earns the 429s it is there to avoid."""
    capacity, refill = bucket_shape(per_minute)
    assert capacity >= 1 and refill > 0
    assert capacity + refill * 60 <= max(per_minute, 2) + 1e-9
    assert capacity + refill * 60 >= 0.97 * per_minute  # and it gives away next to nothing


def test_server_headers_only_ever_lower_what_is_left() -> None:
    budget = LocalBudget(per_minute=400)  # 10 at once
    for _ in range(8):
        assert budget.acquire()
    budget.observe(remaining=15, reset_in=30.0)  # Zulip counts more left than we hold: we keep our own count
    assert budget.tokens < 3
    budget.observe(remaining=1, reset_in=30.0)
    assert budget.tokens <= 1


def test_server_headers_only_ever_lower_what_is_left_in_the_shared_bucket(app: Flask) -> None:
    budget = RateBudget(db.engine, "zulip:lower@example.com", per_minute=400)
    for _ in range(8):
        assert budget.acquire()
    budget.observe(remaining=15, reset_in=30.0)
    started = time.monotonic()
    for _ in range(4):  # about 2 left, then 6.5 a second
        assert budget.acquire()
    assert time.monotonic() - started > 0.15


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


def test_a_bot_with_the_longest_email_gets_both_its_budgets(app: Flask, settings: Settings) -> None:
    """An email may have 254 characters: with "zulip:" and ":events" the budget's name is 267 (the column
    held 100, and such a bot's receiver failed at start)."""
    email = "b" * 64 + "@" + ".".join(["d" * 62] * 2 + ["d" * 59]) + ".org"
    assert len(email) == 254
    longest = settings.model_copy(update={"zulip_email": email})
    for events in (False, True):
        budget = budget_for(longest, events=events)
        assert budget.acquire()
    names = set(db.session.scalars(sa.select(RateBudgetRow.name)))
    assert {f"zulip:{email}", f"zulip:{email}:events"} <= names


def test_a_bot_email_longer_than_an_email_can_be_is_refused(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="zulip_email"):
        Settings(_env_file=None, **{**settings.model_dump(), "zulip_email": "b" * 250 + "@x.org"})  # type: ignore[call-arg]
