"""The transactional outbox: every external effect, written with the change that causes it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, enum_column, utcnow


class OutboxKind(enum.StrEnum):
    CHAT_REPLY = "chat_reply"
    GRADE = "grade"
    SHEET_ROW = "sheet_row"
    ADMIN_JOB = "admin_job"  # an admin's long command from chat, run by the outbox dispatcher (app/admin/chat.py)
    OPS_ALERT = "ops_alert"  # an Alertmanager notification for the ops stream (app/alerts/)
    GITHUB_REPO = "github_repo"  # a run's repository generated and the student invited (app/github/delivery.py)
    GITHUB_REVIEW = "github_review"  # the bot's review of a student's pull request (app/github/delivery.py)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboxItem(db.Model):  # type: ignore[name-defined]
    __tablename__ = "outbox"
    # Only unsent items are indexed (migration 0007): history never slows a claim or a count.
    __table_args__ = (
        sa.Index("ix_outbox_pending", "kind", "next_attempt_at", "id",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
        # A queue's head: no older pending item of the same student (app/outbox/dispatcher.py).
        sa.Index("ix_outbox_pending_queue", "kind", sa.text("coalesce(student_id, 0)"), "id",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
        sa.Index("ix_outbox_failed", "kind", "id",
                 postgresql_where=sa.text("status = 'failed'"), sqlite_where=sa.text("status = 'failed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(enum_column(OutboxKind))
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id", ondelete="SET NULL"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[OutboxStatus] = mapped_column(enum_column(OutboxStatus), default=OutboxStatus.PENDING)
    # Optional idempotency key: one effect per key (e.g. "grade:run:12").
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last attempt may have reached the platform (timeout, dropped connection, 5xx):
    # look for the effect before trying again, so nothing happens twice.
    ambiguous: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    external_id: Mapped[str | None] = mapped_column(sa.String(100), doc="The platform's id of the effect.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def mark_sent(self) -> None:
        self.status = OutboxStatus.SENT
        self.sent_at = utcnow()
        self.last_error = None
