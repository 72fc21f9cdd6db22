"""Writing to and reading from the outbox."""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa

from app.db import db
from app.metrics.registry import REPLIES_QUEUED
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus

OUTBOX = OutboxItem.__table__
_QUEUE_REPLY = sa.insert(OUTBOX).values(
    kind=OutboxKind.CHAT_REPLY.value, student_id=sa.bindparam("student_id"), payload=sa.bindparam("payload"),
    status=OutboxStatus.PENDING.value, attempts=0, next_attempt_at=sa.func.now(), created_at=sa.func.now(),
)


class Recipient(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def zulip_user_id(self) -> int | None: ...


def queue_reply(student: Recipient, content: str) -> None:
    """Queue a chat reply to the student; it commits (or not) with the caller's transaction."""
    payload: dict[str, Any] = {"to": student.email, "content": content}
    if student.zulip_user_id is not None:
        payload["to_user_id"] = student.zulip_user_id
    db.session.execute(_QUEUE_REPLY, {"student_id": student.id, "payload": payload})
    REPLIES_QUEUED.inc()  # counted when written: a transaction rolled back later still counts


def pending_replies(student_id: int | None = None, limit: int = 100) -> list[OutboxItem]:
    """Pending chat replies in the order they were written."""
    query = sa.select(OutboxItem).where(
        OutboxItem.kind == OutboxKind.CHAT_REPLY, OutboxItem.status == OutboxStatus.PENDING
    )
    if student_id is not None:
        query = query.where(OutboxItem.student_id == student_id)
    return list(db.session.scalars(query.order_by(OutboxItem.id).limit(limit)))


def count_pending(kinds: tuple[OutboxKind, ...] | None = None) -> int:
    """Pending outbox items (of these kinds only, if given)."""
    query = sa.select(sa.func.count()).select_from(OutboxItem).where(OutboxItem.status == OutboxStatus.PENDING)
    if kinds is not None:
        query = query.where(OutboxItem.kind.in_(kinds))
    return int(db.session.scalar(query) or 0)
