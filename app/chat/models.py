"""Inbound chat messages, kept so that handling one twice has no second effect."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class InboundMessage(db.Model):  # type: ignore[name-defined]
    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The chat system's own id ("zulip:123", "console:…"): unique, so a repeat is a no-op.
    message_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id", ondelete="SET NULL"), index=True)
    content: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
