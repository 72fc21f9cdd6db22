"""Worker heartbeats, shown by /health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, upsert_insert, utcnow


class WorkerStatus(db.Model):  # type: ignore[name-defined]
    __tablename__ = "worker_status"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


def record_heartbeat(name: str, info: dict[str, Any]) -> None:
    """Upsert a worker's heartbeat (several pollers may beat at once); the caller commits."""
    now = utcnow()
    statement = upsert_insert(WorkerStatus).values(name=name, beat_at=now, info=info)
    statement = statement.on_conflict_do_update(index_elements=["name"], set_={"beat_at": now, "info": info})
    db.session.execute(statement)
