"""Delivering chat replies from the outbox to Zulip: in order per student, each exactly once.

A student's replies go one after another; a reply that cannot go yet holds back the
later ones. An attempt that may have reached Zulip (timeout, dropped connection, 5xx)
marks the reply ambiguous: before sending it again we look in the conversation for it,
so a retry never doubles a message. A reply that keeps failing is marked failed with
its reason (``./manage.py outbox list --failed``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.db import db, is_postgresql, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.workers.base import StopFlag, backoff
from app.zulip.api import RateLimited, Stopping, ZulipApi, ZulipError
from app.zulip.wakeup import OutboxListener

log = logging.getLogger(__name__)
LOCK_CLASS = 7301  # pg advisory lock namespace: one sender per partition of the students
LOOKBACK_MESSAGES = 50

class ReplyDelivery:
    """Sends the replies of one partition of the students (``student_id % partitions``).

    Each partition has exactly one sender across all pollers (an advisory lock held for
    the sender's life), so a student's replies always go through the same sender, in id
    order, with no per-reply locking.
    """

    def __init__(self, api: ZulipApi, settings: Settings, partition: int = 0, partitions: int = 1) -> None:
        self.api, self.settings = api, settings
        self.partition, self.partitions = partition, partitions
        self._lock_connection: Connection | None = None

    def claim_partition(self, stop: StopFlag) -> bool:
        """Wait until this partition is ours (another poller may hold it); False if stopped first."""
        if not is_postgresql():
            return True
        self._lock_connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        waiting = False
        while not stop.stopping:
            if self._lock_connection.scalar(sa.text("SELECT pg_try_advisory_lock(:c, :p)"),
                                             {"c": LOCK_CLASS, "p": self.partition}):
                return True
            if not waiting:
                log.info("reply partition %d is served by another poller; standing by", self.partition)
                waiting = True
            stop.event.wait(1.0)
        return False

    def _mine(self) -> Any:
        return sa.and_(OutboxItem.kind == OutboxKind.CHAT_REPLY, OutboxItem.status == OutboxStatus.PENDING,
                       OutboxItem.student_id.is_not(None), OutboxItem.student_id % self.partitions == self.partition)

    def run_once(self, limit: int = 200) -> int:
        """Send what is due in this partition; the number of replies that left."""
        items = db.session.scalars(sa.select(OutboxItem).where(self._mine()).order_by(OutboxItem.id).limit(limit)).all()
        held_back: set[int | None] = set()
        sent = 0
        for item in items:
            if item.student_id in held_back:
                continue  # an earlier reply to this student must go first
            if item.next_attempt_at > utcnow():
                held_back.add(item.student_id)
                continue
            outcome = self.send(item)
            db.session.commit()
            if outcome == "stopping":
                break
            if outcome == "sent":
                sent += 1
            elif outcome != "failed":
                held_back.add(item.student_id)
        db.session.rollback()
        return sent

    def next_due_in(self) -> float | None:
        """Seconds until this partition's earliest pending reply is due (None: nothing pending)."""
        due: datetime | None = db.session.scalar(sa.select(sa.func.min(OutboxItem.next_attempt_at)).where(self._mine()))
        db.session.rollback()
        if due is None:
            return None
        return max((due - utcnow()).total_seconds(), 0.0)

    def close(self) -> None:
        if self._lock_connection is not None:
            self._lock_connection.close()
            self._lock_connection = None

    def send(self, item: OutboxItem) -> str:
        """One attempt at one reply: 'sent', 'retry', 'failed' or 'stopping'. The caller commits."""
        try:
            if item.ambiguous and (found := self._already_sent(item)) is not None:
                self._mark_sent(item, found, "found after an uncertain attempt")
                return "sent"
            item.last_attempt_at = utcnow()
            item.attempts += 1
            result = self.api.call("messages", "POST", self._message(item))
        except Stopping:
            return "stopping"
        except RateLimited as error:
            item.attempts = max(item.attempts - 1, 0)  # the budget's fault, not the reply's
            item.next_attempt_at = utcnow() + timedelta(seconds=error.retry_after)
            item.last_error = str(error)
            return "retry"
        except ZulipError as error:
            return self._failed_attempt(item, error)
        self._mark_sent(item, result.get("id"), "sent")
        return "sent"

    def _message(self, item: OutboxItem) -> dict[str, Any]:
        payload = item.payload
        recipient = payload.get("to_user_id") or payload["to"]
        return {"type": "private", "to": json.dumps([recipient]), "content": payload["content"]}

    def _mark_sent(self, item: OutboxItem, external_id: object, how: str) -> None:
        item.mark_sent()
        item.ambiguous = False
        item.external_id = str(external_id) if external_id is not None else None
        log.info("reply %s to student %s %s", item.id, item.student_id, how)

    def _failed_attempt(self, item: OutboxItem, error: ZulipError) -> str:
        item.last_error = str(error)[:500]
        item.ambiguous = item.ambiguous or error.ambiguous
        if not error.retryable or item.attempts >= self.settings.zulip_reply_max_attempts:
            item.status = OutboxStatus.FAILED
            log.error("reply %s to student %s failed for good after %d attempt(s): %s",
                      item.id, item.student_id, item.attempts, error)
            return "failed"
        item.next_attempt_at = utcnow() + timedelta(seconds=backoff(item.attempts, initial=1.0, maximum=300.0))
        log.warning("reply %s: attempt %d failed (%s); retrying", item.id, item.attempts, error)
        return "retry"

    def _already_sent(self, item: OutboxItem) -> int | None:
        """The id of this reply in the conversation, if an earlier uncertain attempt did deliver it."""
        recipient = item.payload.get("to_user_id") or item.payload["to"]
        result = self.api.call("messages", "GET", {
            "anchor": "newest", "num_before": LOOKBACK_MESSAGES, "num_after": 0, "apply_markdown": "false",
            "narrow": json.dumps([{"operator": "dm", "operand": [recipient]}]),
        })
        # Replies leave in order, so this one must be newer than the student's previous one:
        # an identical earlier reply (two `help`s in a row) is not mistaken for it.
        after_id = self._previous_reply_id(item)
        since = item.created_at.timestamp() - 5
        for message in result.get("messages", []):
            if (int(message["id"]) > after_id and message.get("sender_email") == self.api.email
                    and message.get("content") == item.payload["content"] and message.get("timestamp", 0) >= since):
                return int(message["id"])
        return None

    def _previous_reply_id(self, item: OutboxItem) -> int:
        query = sa.select(sa.func.max(sa.cast(OutboxItem.external_id, sa.BigInteger))).where(
            OutboxItem.student_id == item.student_id, OutboxItem.kind == OutboxKind.CHAT_REPLY,
            OutboxItem.status == OutboxStatus.SENT, OutboxItem.id < item.id)
        return int(db.session.scalar(query) or 0)


def run_delivery_loop(delivery: ReplyDelivery, stop: StopFlag, idle_seconds: float) -> None:
    """Send replies until stopped, waking on NOTIFY when one is committed (PostgreSQL) or on a timer."""
    if not delivery.claim_partition(stop):
        delivery.close()
        return
    listener = OutboxListener(db.engine) if is_postgresql() else None
    errors = 0
    try:
        while not stop.stopping:
            try:
                sent = delivery.run_once()
                due_in = delivery.next_due_in()
                errors = 0
            except Exception:
                errors += 1
                log.exception("reply delivery pass failed (%d in a row)", errors)
                db.session.rollback()
                stop.event.wait(backoff(errors, initial=0.5, maximum=30))
                continue
            if sent:
                continue
            wait = idle_seconds if due_in is None else min(due_in, idle_seconds)
            if listener is not None:
                listener.wait(wait, lambda: stop.stopping)
            else:
                stop.event.wait(min(wait, 0.5))
    finally:
        delivery.close()
        if listener is not None:
            listener.close()
