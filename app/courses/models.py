"""Classroom courses known under short aliases."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class Course(db.Model):  # type: ignore[name-defined]
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), unique=True)
    classroom_name: Mapped[str] = mapped_column(sa.String(300))
    classroom_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
