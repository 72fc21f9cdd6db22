"""Zulip state kept in the database: the receiver's progress and the shared rate budget."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class ReceiverState(db.Model):  # type: ignore[name-defined]
    """The last Zulip message id the receiver handed to the core, per bot."""

    __tablename__ = "receiver_state"

    bot_email: Mapped[str] = mapped_column(sa.String(254), primary_key=True)
    last_message_id: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateBudget(db.Model):  # type: ignore[name-defined]
    """A token bucket shared by every process that calls the same API as the same bot."""

    __tablename__ = "rate_budgets"

    # "zulip:" + the bot's email (up to 254 characters) + ":events"
    name: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    tokens: Mapped[float] = mapped_column(sa.Float)
    capacity: Mapped[float] = mapped_column(sa.Float)
    refill_per_second: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime] = mapped_column(UTCDateTime)


class DeadLetter(db.Model):  # type: ignore[name-defined]
    """A Zulip message the core kept failing on, set aside so the messages behind it move on."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True, doc="Zulip's message id.")
    sender: Mapped[str] = mapped_column(sa.String(254))
    content: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
