"""GitHub webhook deliveries already acted on, so that a replayed delivery is refused."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class GitHubDelivery(db.Model):  # type: ignore[name-defined]
    """One accepted `X-GitHub-Delivery` (a GUID), kept for a while: in PostgreSQL, so every uWSGI worker sees it."""

    __tablename__ = "github_deliveries"
    delivery_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
