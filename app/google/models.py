"""Google state in the database: the app's authorization, sign-in requests, admins, linked accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class GoogleAuthorization(db.Model):  # type: ignore[name-defined]
    """The account Lessonbot acts as; its refresh token is encrypted with the app's secret key."""

    __tablename__ = "google_authorization"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    refresh_token_encrypted: Mapped[str] = mapped_column(sa.Text)
    authorized_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthRequest(db.Model):  # type: ignore[name-defined]
    """One started Google sign-in (app authorization, admin sign-in, student link); used once."""

    __tablename__ = "oauth_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(64), unique=True)
    purpose: Mapped[str] = mapped_column(sa.String(16))
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id", ondelete="CASCADE"))
    code_verifier: Mapped[str | None] = mapped_column(sa.String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who asked (admin sign-in): GET /admin/login is rate-bounded per address by counting these rows.
    client_address: Mapped[str | None] = mapped_column(sa.String(64))


class Admin(db.Model):  # type: ignore[name-defined]
    """Who may sign in to the admin pages."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every session cookie carries the version it was issued under; sign-out bumps it, so a
    # copied cookie stops working everywhere at once.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # The admin's own Zulip account: only it may give the bot `admin …` commands (app/admin/chat.py).
    zulip_user_id: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)


class GoogleLink(db.Model):  # type: ignore[name-defined]
    """A student's Google (Classroom) identity, linked from chat with `link`."""

    __tablename__ = "google_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id", ondelete="CASCADE"), unique=True)
    google_email: Mapped[str] = mapped_column(sa.String(254))
    google_user_id: Mapped[str | None] = mapped_column(sa.String(64))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.google_email, "user_id": self.google_user_id}
