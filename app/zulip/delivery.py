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
LOCK_CLASS = 7301  # pg advisory lock namespace: one sender per student at a time
LOOKBACK_MESSAGES = 50

_DUE_STUDENTS = sa.text("""
    SELECT student_id FROM outbox
    WHERE kind = 'chat_reply' AND status = 'pending' AND student_id IS NOT NULL
    GROUP BY student_id HAVING MIN(next_attempt_at) <= :now
    ORDER BY MIN(id) LIMIT :limit
""")


class ReplyDelivery:
    def __init__(self, api: ZulipApi, settings: Settings) -> None:
        self.api, self.settings = api, settings
        self._locks: Connection | None = None

    def run_once(self, limit: int = 50) -> int:
        """Send what is due; the number of replies that left."""
        sent = 0
        students = [row.student_id for row in db.session.execute(_DUE_STUDENTS, {"now": utcnow(), "limit": limit})]
        db.session.rollback()
        for student_id in students:
            if not self._lock(student_id):
                continue  # another sender has this student
            try:
                sent += self._deliver_student(student_id)
            finally:
                self._unlock(student_id)
        return sent

    def next_due_in(self) -> float | None:
        """Seconds until the earliest pending reply is due (None: nothing pending)."""
        query = sa.select(sa.func.min(OutboxItem.next_attempt_at)).where(
            OutboxItem.kind == OutboxKind.CHAT_REPLY, OutboxItem.status == OutboxStatus.PENDING)
        due: datetime | None = db.session.scalar(query)
        db.session.rollback()
        if due is None:
            return None
        if due.tzinfo is None:
            due = due.replace(tzinfo=utcnow().tzinfo)
        return max((due - utcnow()).total_seconds(), 0.0)

    def _lock(self, student_id: int) -> bool:
        if not is_postgresql():
            return True
        if self._locks is None:
            self._locks = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(self._locks.scalar(sa.text("SELECT pg_try_advisory_lock(:c, :o)"), {"c": LOCK_CLASS, "o": student_id}))

    def _unlock(self, student_id: int) -> None:
        if self._locks is not None:
            self._locks.execute(sa.text("SELECT pg_advisory_unlock(:c, :o)"), {"c": LOCK_CLASS, "o": student_id})

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
            self._locks = None

    def _deliver_student(self, student_id: int) -> int:
        query = (sa.select(OutboxItem).where(OutboxItem.student_id == student_id, OutboxItem.kind == OutboxKind.CHAT_REPLY,
                                             OutboxItem.status == OutboxStatus.PENDING).order_by(OutboxItem.id).limit(20))
        sent = 0
        for item in db.session.scalars(query).all():
            if item.next_attempt_at > utcnow():
                break
            outcome = self.send(item)
            db.session.commit()
            if outcome == "sent":
                sent += 1
            elif outcome != "failed":
                break  # keep this student's order: later replies wait for this one
        db.session.rollback()
        return sent

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
