"""The lean message path (app/chat/store.py): three round trips per message, the ORM's rare work in the same transaction."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from app.chat.store import LeanStore
from app.db import db
from app.runs.models import StepEvent, StepEventKind
from tests.helpers import post_message, replies_to


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
