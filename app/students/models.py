"""People who talk to the bot."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class Student(db.Model):  # type: ignore[name-defined]
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(200), default="")
    zulip_user_id: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    language: Mapped[str] = mapped_column(sa.String(2), default="ru")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Student {self.id} {self.email}>"
