"""What is kept, and for how long: history must not grow forever.

Inbound messages (their content included) and delivered chat replies and ops alerts are deleted once they
are older than ``history_keep_days``; by then no chat system sends a message again, so the
inbound ids have done their job as the idempotency window. Expired sign-in requests go as
they expire. Kept whatever their age: grades and gradebook rows (their keys guard that a
grade is written exactly once), failed or pending items, runs and step results (the
teacher's record), dead letters (an admin settles them).

Deletes go in batches in short transactions, so the poller that runs this never holds
locks long and a large backlog is worked off over a few passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.chat.models import InboundMessage
from app.db import db, utcnow
from app.google.signin import prune_requests
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings

BATCH = 5000
DELIVERED_KEPT_FOR_A_WHILE = (OutboxKind.CHAT_REPLY, OutboxKind.OPS_ALERT)  # chat messages; grades are kept
MAX_BATCHES = 20  # per table and pass: at most 100 000 rows, then the next pass goes on


@dataclass
class Pruned:
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def prune_history(settings: Settings, now: datetime | None = None) -> Pruned:
    """Delete what is past keeping (commits each batch); how many rows of each kind went."""
    cutoff = (now or utcnow()) - timedelta(days=settings.history_keep_days)
    pruned = Pruned()
    pruned.counts["inbound messages"] = _in_batches(
        InboundMessage, InboundMessage.received_at < cutoff)
    pruned.counts["delivered replies"] = _in_batches(
        OutboxItem, OutboxItem.kind.in_(DELIVERED_KEPT_FOR_A_WHILE), OutboxItem.status == OutboxStatus.SENT,
        OutboxItem.sent_at < cutoff)
    pruned.counts["sign-in requests"] = prune_requests()
    db.session.commit()
    return pruned


def _in_batches(model: type[db.Model], *conditions: sa.ColumnElement[bool]) -> int:  # type: ignore[name-defined]
    """Oldest first by id (ids grow with time), so each batch finds its rows at the front of the table."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        batch = sa.select(model.id).where(*conditions).order_by(model.id).limit(BATCH).scalar_subquery()
        count = int(db.session.execute(sa.delete(model).where(model.id.in_(batch))).rowcount or 0)  # type: ignore[attr-defined]
        db.session.commit()
        deleted += count
        if count < BATCH:
            break
    return deleted
