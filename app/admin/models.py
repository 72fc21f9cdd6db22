"""What admins did from the admin pages: who, when, to what."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class AdminAction(db.Model):  # type: ignore[name-defined]
    """One action an admin confirmed (restart, stop, regrade, resend, retry), shown on the student's page."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_email: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(32))
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id", ondelete="SET NULL"), index=True)
    # What it was done to ("run 12", "outbox 40") and what came of it, in one line.
    target: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
