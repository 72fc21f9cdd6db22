"""The lean message path (app/chat/store.py): three round trips per message, the ORM's rare work in the same transaction."""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import current
from app.chat import store as store_module
from app.chat.service import InboundChat, receive_message
from app.chat.store import LeanStore, message_store
from app.db import db
from app.runs.models import StepEvent, StepEventKind
from tests.helpers import post_message, replies_to
from tests.pg import end_sessions

db_module = importlib.import_module("app.db")  # the module: `app.db` as an attribute is the SQLAlchemy object


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The last statement of each round trip the lean store makes."""
    sent: list[str] = []
    send = LeanStore._send

    def counted(self: LeanStore, sql: str = "", params: Any = None) -> None:
        sent.append((sql or self.pending[-1][0]).split()[0])
        send(self, sql, params)

    monkeypatch.setattr(LeanStore, "_send", counted)
    return sent


@pytest.mark.parametrize("text", ["help", "start git-basics", "lang ru"])
def test_a_message_takes_three_round_trips_begin_and_commit_included(client: FlaskClient, round_trips: list[str],
                                                                     text: str) -> None:
    assert post_message(client, "ann@example.com", text)[0] == 200
    assert round_trips == ["EXECUTE", "EXECUTE", "COMMIT"]  # lock the sender; record + read the run; write + commit
    assert len(replies_to("ann@example.com")) == 1


def test_a_run_step_checked_in_chat_takes_three_round_trips(client: FlaskClient, round_trips: list[str]) -> None:
    post_message(client, "ann@example.com", "start git-basics")
    round_trips.clear()
    assert post_message(client, "ann@example.com", "check")[0] == 200
    assert round_trips == ["EXECUTE", "EXECUTE", "COMMIT"]
    assert [event.kind for event in db.session.scalars(sa.select(StepEvent))] == [StepEventKind.NOT_YET]


def _message_backend() -> int:
    """The PostgreSQL backend of this thread's message connection."""
    held = store_module._held.connection
    assert held is not None
    return int(held.connection.dbapi_connection.get_backend_pid())


def test_the_thread_keeps_its_message_connection_between_messages(client: FlaskClient) -> None:
    post_message(client, "ann@example.com", "help")
    first, checked_out = _message_backend(), db.engine.pool.checkedout()
    for _ in range(5):
        assert post_message(client, "ann@example.com", "help")[0] == 200
    assert _message_backend() == first
    assert db.engine.pool.checkedout() == checked_out  # the pool was not asked again
    assert len(replies_to("ann@example.com")) == 6


@pytest.mark.parametrize(("threshold", "idle"), [(5.0, 0.0), (0.05, 0.1)],
                         ids=["just in use: its socket tells", "idle: pinged"])
def test_a_message_connection_the_server_ended_is_replaced_before_the_next_message(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch, threshold: float, idle: float) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", threshold)
    post_message(client, "ann@example.com", "help")
    ended = _message_backend()
    assert end_sessions(db.engine, ended) == 1  # a restart, a failover, an idle timeout
    time.sleep(idle)
    assert post_message(client, "ann@example.com", "lessons")[0] == 200  # no error: it connected again
    assert _message_backend() != ended
    assert len(replies_to("ann@example.com")) == 2


def test_a_message_inside_a_message_gets_a_connection_of_its_own(app: Flask) -> None:
    """The thread's connection is one transaction at a time: a message handled while another is open (none
    does today, but nothing forbids it) takes a pooled connection, and both commit on their own."""
    with message_store() as outer:
        assert isinstance(outer, LeanStore) and outer.held
        ann = outer.lock_sender("ann@example.com", "Ann", None, "en")
        inner = receive_message(InboundChat(message_id="inner:1", sender_email="bob@example.com", content="help"),
                                current.catalog(), current.settings())
        assert not inner.duplicate
        outer.reply(ann, "outer reply")
        outer.commit()
    assert replies_to("ann@example.com") == ["outer reply"]
    assert len(replies_to("bob@example.com")) == 1
    assert store_module._held.connection is outer.connection and not store_module._held.in_use
