"""Pooled connections are checked at checkout without a round trip while they are in use, and replaced when gone."""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.db import db
from tests.pg import end_sessions

db_module = importlib.import_module("app.db")  # the module: `app.db` as an attribute is the SQLAlchemy object


@pytest.fixture
def pings(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ping the app's engine makes, from now on."""
    made: list[float] = []
    real = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        made.append(time.monotonic())
        return bool(real(dbapi_connection))

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return made


def _backend_pid() -> int:
    with db.engine.connect() as connection:
        return int(connection.scalar(sa.text("SELECT pg_backend_pid()")))


def test_a_connection_just_in_use_is_not_pinged(pings: list[float]) -> None:
    first = _backend_pid()
    for _ in range(20):
        assert _backend_pid() == first  # the same pooled connection, checked out again at once
    assert pings == []


def test_a_connection_idle_longer_than_the_threshold_is_pinged(pings: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.05)
    first = _backend_pid()
    time.sleep(0.1)
    assert _backend_pid() == first
    assert len(pings) == 1


@pytest.mark.parametrize(("threshold", "idle"), [(5.0, 0.0), (0.05, 0.1)],
                         ids=["just in use: its socket tells", "idle: pinged"])
def test_a_connection_the_server_ended_is_replaced_at_checkout(pings: list[float], monkeypatch: pytest.MonkeyPatch,
                                                               threshold: float, idle: float) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", threshold)
    ended = _backend_pid()
    assert end_sessions(db.engine, ended) == 1
    time.sleep(idle)
    replaced = _backend_pid()  # no error: the pool noticed and connected again
    assert replaced != ended
    assert len(pings) == 1  # the ended connection was pinged (and failed); the new one was not
