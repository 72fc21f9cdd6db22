"""The demo's SQLite: the message path goes through the ORM session there (app/chat/store.py SessionStore)
and must behave as the lean PostgreSQL path does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from app import create_app
from app.chat.models import InboundMessage
from app.chat.service import InboundChat, receive_batch, receive_message
from app.db import db
from app.runs.models import LessonRun, RunStatus
from app.students.models import Student
from tests.conftest import make_settings
from tests.helpers import replies_to


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'demo.sqlite3'}", tmp_path / "git", default_language="en"),
                     TESTING=True)
    with app.app_context():
        upgrade()
        yield app
        db.session.remove()
        db.engine.dispose()


def _say(app: Flask, message_id: str, content: str) -> bool:
    message = InboundChat(message_id=message_id, sender_email="demo@example.com", sender_full_name="Demo", content=content)
    return not receive_message(message, app.extensions["lessonbot.catalog"], app.extensions["lessonbot.settings"]).duplicate


def test_a_demo_student_starts_checks_and_stops_a_lesson_once_per_message(sqlite_app: Flask) -> None:
    assert [_say(sqlite_app, f"console:{n}", text) for n, text in enumerate(["start git-basics", "hint", "stop"])] \
        == [True, True, True]
    assert _say(sqlite_app, "console:1", "hint") is False  # a repeat has no second effect
    runs = list(db.session.scalars(sa.select(LessonRun)))
    assert [(run.lesson_id, run.status) for run in runs] == [("git-basics", RunStatus.STOPPED)]
    student = db.session.scalars(sa.select(Student)).one()
    assert set(db.session.scalars(sa.select(InboundMessage.student_id))) == {student.id}
    replies = replies_to("demo@example.com")
    assert len(replies) == 3 and "git-basics" in replies[-1]


def test_a_demo_batch_answers_each_message_in_order(sqlite_app: Flask) -> None:
    messages = [InboundChat(message_id=f"console:b{n}", sender_email="demo@example.com", content=text)
                for n, text in enumerate(["help", "lessons", "help"])]
    catalog, settings = sqlite_app.extensions["lessonbot.catalog"], sqlite_app.extensions["lessonbot.settings"]
    assert [result.status for result in receive_batch([*messages, messages[0]], catalog, settings)] \
        == ["accepted", "accepted", "accepted", "duplicate"]
    assert len(replies_to("demo@example.com")) == 3
