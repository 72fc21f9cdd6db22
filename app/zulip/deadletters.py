"""Dead letters: Zulip messages the core could not take, kept for an admin, with an apology to the student.

One message the core keeps failing on must not stall every student behind it. The
receiver sets it aside here after bounded retries; the student hears that their
message could not be handled (in their language, through the outbox like any reply),
and admins see it in ``./manage.py deadletters list`` and ``/health``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.db import db
from app.i18n import Text
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.outbox.service import queue_reply
from app.students.models import Student
from app.zulip.models import DeadLetter

MAX_SENDER = 254


def dead_letter(message: dict[str, Any], reason: str, attempts: int, default_language: str) -> bool:
    """Record the message and queue the apology; False if it was already set aside. The caller commits."""
    message_id = int(message["id"])
    if db.session.scalar(sa.select(DeadLetter.id).where(DeadLetter.message_id == message_id)) is not None:
        return False
    sender = str(message.get("sender_email", ""))
    db.session.add(DeadLetter(message_id=message_id, sender=sender[:MAX_SENDER], content=str(message.get("content", "")),
                              reason=reason, attempts=attempts))
    _apologise(sender, message.get("sender_id"), default_language)
    return True


def _apologise(email: str, zulip_user_id: object, default_language: str) -> None:
    student = _known_student(email, zulip_user_id)
    if student is not None:
        queue_reply(student, Text("zulip.dead_letter").render(student.language))
        return
    # Someone the core never recorded: the reply still goes, addressed by Zulip user id.
    payload: dict[str, Any] = {"to": email, "content": Text("zulip.dead_letter").render(default_language)}
    if isinstance(zulip_user_id, int) and not isinstance(zulip_user_id, bool):
        payload["to_user_id"] = zulip_user_id
    db.session.add(OutboxItem(kind=OutboxKind.CHAT_REPLY, student_id=None, payload=payload, status=OutboxStatus.PENDING))


def _known_student(email: str, zulip_user_id: object) -> Student | None:
    if isinstance(zulip_user_id, int) and not isinstance(zulip_user_id, bool):
        student = db.session.scalar(sa.select(Student).where(Student.zulip_user_id == zulip_user_id))
        if student is not None:
            return student
    return db.session.scalar(sa.select(Student).where(Student.email == email.lower()))


def recent_dead_letters(limit: int) -> list[DeadLetter]:
    """The newest dead letters first."""
    return list(db.session.scalars(sa.select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)))


def count_dead_letters() -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(DeadLetter)) or 0)
