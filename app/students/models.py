"""People who talk to the bot."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow

CONFIRMED_GITHUB = "github_confirmed_at IS NOT NULL"


class Student(db.Model):  # type: ignore[name-defined]
    __tablename__ = "students"
    __table_args__ = (
        # Anyone may claim a GitHub login (`link github <login>`); only one student can have it confirmed,
        # by accepting the invitation GitHub sent to that account (migration 0010).
        sa.Index("uq_students_github_login_confirmed", "github_login", unique=True,
                 postgresql_where=sa.text(CONFIRMED_GITHUB), sqlite_where=sa.text(CONFIRMED_GITHUB)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(200), default="")
    zulip_user_id: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    language: Mapped[str] = mapped_column(sa.String(2), default="ru")
    github_login: Mapped[str | None] = mapped_column(sa.String(39))  # lower case, as GitHub compares logins
    github_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Student {self.id} {self.email}>"
