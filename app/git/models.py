"""Hook signatures already accepted, so that a replayed event is refused."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db


class HookSignature(db.Model):  # type: ignore[name-defined]
    """One accepted `X-Lessonbot-Signature`, kept until its timestamp leaves the validity window.

    In PostgreSQL rather than in memory so that every uWSGI worker refuses the same replay.
    """

    __tablename__ = "hook_signatures"
    signature: Mapped[str] = mapped_column(sa.String(71), primary_key=True)   # "sha256=" + 64 hex digits
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
