"""History past keeping is deleted; what guards exactly-once, or waits for an admin, is kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app import retention
from app.chat.models import InboundMessage
from app.db import db, utcnow
from app.google.models import OAuthRequest
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.students.models import Student
from app.workers.poller import Poller

OLD, RECENT = timedelta(days=200), timedelta(days=3)


def _student() -> Student:
    student = Student(email="kept@example.com", full_name="Kept Student")
    db.session.add(student)
    db.session.flush()
    return student


def _message(student: Student, n: int, age: timedelta) -> None:
    db.session.add(InboundMessage(message_id=f"zulip:{n}", student_id=student.id, content=f"message {n}",
                                  received_at=utcnow() - age))


def _item(student: Student, kind: OutboxKind, status: OutboxStatus, age: timedelta, **extra: Any) -> OutboxItem:
    at = utcnow() - age
    item = OutboxItem(kind=kind, student_id=student.id, payload={"to": student.email, "content": "x"}, status=status,
                      created_at=at, next_attempt_at=at, sent_at=at if status == OutboxStatus.SENT else None, **extra)
    db.session.add(item)
    return item


def _count(model: Any, *conditions: Any) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*conditions)) or 0)


def test_old_messages_and_delivered_replies_go_grades_and_waiting_items_stay(app: Flask, settings: Settings) -> None:
    student = _student()
    for n in range(3):
        _message(student, n, OLD)
    _message(student, 10, RECENT)
    _item(student, OutboxKind.CHAT_REPLY, OutboxStatus.SENT, OLD)
    _item(student, OutboxKind.OPS_ALERT, OutboxStatus.SENT, OLD)
    recent_reply = _item(student, OutboxKind.CHAT_REPLY, OutboxStatus.SENT, RECENT)
    waiting = _item(student, OutboxKind.CHAT_REPLY, OutboxStatus.PENDING, OLD)
    failed = _item(student, OutboxKind.CHAT_REPLY, OutboxStatus.FAILED, OLD)
    grade = _item(student, OutboxKind.GRADE, OutboxStatus.SENT, OLD, dedupe_key="grade:run:1")
    row = _item(student, OutboxKind.SHEET_ROW, OutboxStatus.SENT, OLD, dedupe_key="sheet:run:1")
    db.session.add_all([
        OAuthRequest(state="expired", purpose="admin", expires_at=utcnow() - timedelta(days=1)),
        OAuthRequest(state="live", purpose="admin", expires_at=utcnow() + timedelta(minutes=10)),
    ])
    db.session.commit()

    pruned = retention.prune_history(settings.model_copy(update={"history_keep_days": 120}))

    assert pruned.counts == {"inbound messages": 3, "delivered replies": 2, "sign-in requests": 1}
    assert [m.message_id for m in db.session.scalars(sa.select(InboundMessage))] == ["zulip:10"]
    assert {item.id for item in db.session.scalars(sa.select(OutboxItem))} == {
        recent_reply.id, waiting.id, failed.id, grade.id, row.id}
    assert [r.state for r in db.session.scalars(sa.select(OAuthRequest))] == ["live"]
    assert retention.prune_history(settings).total == 0  # nothing twice


def test_a_backlog_goes_in_batches_over_several_passes(app: Flask, settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 4)
    monkeypatch.setattr(retention, "MAX_BATCHES", 2)
    student = _student()
    for n in range(11):
        _message(student, n, OLD)
    db.session.commit()
    assert retention.prune_history(settings).counts["inbound messages"] == 8  # two batches, then the pass ends
    assert _count(InboundMessage) == 3
    assert retention.prune_history(settings).counts["inbound messages"] == 3
    assert _count(InboundMessage) == 0


def test_the_poller_prunes_on_its_first_pass_then_once_an_hour(app: Flask, settings: Settings) -> None:
    student = _student()
    _message(student, 1, OLD)
    db.session.commit()
    poller = Poller(settings, app.extensions["lessonbot.catalog"])
    poller.run_once()
    assert _count(InboundMessage) == 0
    _message(student, 2, OLD)
    db.session.commit()
    poller.run_once()
    assert _count(InboundMessage) == 1  # within the hour: not again
    poller.next_prune = 0.0  # an hour later
    poller.run_once()
    assert _count(InboundMessage) == 0
