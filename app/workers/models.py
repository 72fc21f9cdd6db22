"""Worker heartbeats, shown by /health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class WorkerStatus(db.Model):  # type: ignore[name-defined]
    __tablename__ = "worker_status"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
