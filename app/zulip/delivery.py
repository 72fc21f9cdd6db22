"""Delivering chat replies (and ops alerts) from the outbox to Zulip: in order per student, each exactly once.

A student's replies go one after another; a reply that cannot go yet holds back the
later ones. An attempt that may have reached Zulip (timeout, dropped connection, 5xx)
marks the reply ambiguous: before sending it again we look in the conversation for it,
so a retry never doubles a message. Every attempt is marked in flight (committed)
before the request leaves, so even after a SIGKILL mid-send the next attempt looks
first. A reply that keeps failing is marked failed with its reason
(``./manage.py outbox list --failed``). A refused API key fails no reply: it stops the
sender (:class:`~app.zulip.api.Unauthorized` propagates) until the key works again.

Alerts from Alertmanager (``ops_alert`` items, app/alerts/) take the same path as stream
messages to the ops stream and topic: they belong to no student, so partition 0 sends
them, in order among themselves, and a retrying alert holds back no student's reply.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.db import db, is_postgresql, utcnow
from app.loop import StopFlag, backoff, try_advisory_lock
from app.metrics.registry import REPLY_LATENCY, ZULIP_FAILED, ZULIP_SENT
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.zulip.api import RateLimited, Stopping, Unauthorized, ZulipApi, ZulipError
from app.zulip.wakeup import OutboxListener

log = logging.getLogger(__name__)
LOCK_CLASS = 7301  # pg advisory lock namespace: one sender per partition of the students
LOOKBACK_MESSAGES = 50
SEND_TIMEOUT = 15.0  # seconds a POST /messages may take
# After a crash mid-send the attempt may still land: look for it only once it surely has.
IN_FLIGHT_GRACE = timedelta(seconds=SEND_TIMEOUT + 5)
DM_FEATURE_LEVEL = 177  # Zulip 7.0: the `dm` narrow operator (`pm-with` before)
ZULIP_KINDS = (OutboxKind.CHAT_REPLY, OutboxKind.OPS_ALERT)


class SendOutcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    STOPPING = "stopping"


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
            if try_advisory_lock(self._lock_connection, (LOCK_CLASS, self.partition)):
                return True
            if not waiting:
                log.info("reply partition %d is served by another poller; standing by", self.partition)
                waiting = True
            stop.event.wait(1.0)
        return False

    def _mine(self) -> Any:
        # Replies to someone the core never recorded (a dead letter's apology) go with partition 0.
        return sa.and_(OutboxItem.kind.in_(ZULIP_KINDS), OutboxItem.status == OutboxStatus.PENDING,
                       sa.func.coalesce(OutboxItem.student_id, 0) % self.partitions == self.partition)

    def run_once(self, limit: int = 200) -> int:
        """Send what is due in this partition; the number of replies that left.

        Raises ZulipError (Unauthorized among them) when Zulip cannot be reached at all:
        that is the sender's trouble, and no reply is charged an attempt for it.
        """
        self.api.client()
        items = db.session.scalars(sa.select(OutboxItem).where(self._mine()).order_by(OutboxItem.id).limit(limit)).all()
        held_back: set[tuple[OutboxKind, int | None]] = set()
        sent = 0
        for item in items:
            queue = (item.kind, item.student_id)
            if queue in held_back:
                continue  # an earlier reply to this student (or an earlier alert) must go first
            if item.next_attempt_at > utcnow():
                held_back.add(queue)
                continue
            outcome = self.send(item)
            db.session.commit()
            if outcome is SendOutcome.STOPPING:
                break
            if outcome is SendOutcome.SENT:
                sent += 1
            elif outcome is not SendOutcome.FAILED:
                held_back.add(queue)
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
        """Give the partition up. The advisory lock belongs to the database session, not to the
        checkout: returning the connection to the pool with the lock still held would keep the
        partition from the sender started next, so unlock first, or drop the connection."""
        if self._lock_connection is None:
            return
        try:
            self._lock_connection.execute(sa.text("SELECT pg_advisory_unlock(:c, :p)"),
                                          {"c": LOCK_CLASS, "p": self.partition})
            self._lock_connection.close()
        except sa.exc.DBAPIError:
            self._lock_connection.invalidate()  # the session (and its lock) ends with the connection
        self._lock_connection = None

    def send(self, item: OutboxItem) -> SendOutcome:
        """One attempt at one reply; the caller commits the outcome.

        The attempt is committed as in flight before the request leaves: if the process
        dies while Zulip holds the request, the next attempt finds the reply instead of
        sending it again. Raises Unauthorized (a bad key fails no reply).
        """
        in_flight = False
        try:
            if item.ambiguous and (found := self._already_sent(item)) is not None:
                self._mark_sent(item, found, "found after an uncertain attempt")
                return SendOutcome.SENT
            self._mark_in_flight(item)
            in_flight = True
            result = self.api.call("messages", "POST", self._message(item), timeout=SEND_TIMEOUT)
        except Stopping:
            if in_flight:  # the budget said stop before the request left
                item.ambiguous, item.attempts, item.next_attempt_at = False, max(item.attempts - 1, 0), utcnow()
            return SendOutcome.STOPPING
        except RateLimited as error:
            if in_flight:  # refused before it was looked at: nothing went out, and it is not the reply's fault
                item.ambiguous, item.attempts = False, max(item.attempts - 1, 0)
            item.next_attempt_at = utcnow() + timedelta(seconds=error.retry_after)
            item.last_error = str(error)
            return SendOutcome.RETRY
        except Unauthorized:
            if in_flight:  # refused: nothing went out (a failed lookup leaves the doubt as it was)
                item.ambiguous, item.attempts = False, max(item.attempts - 1, 0)
            item.next_attempt_at = utcnow()
            db.session.commit()
            raise
        except ZulipError as error:
            if not in_flight:  # the lookup failed: the earlier attempt is still in doubt, and none was made now
                item.last_error = str(error)[:500]
                item.next_attempt_at = utcnow() + timedelta(seconds=backoff(max(item.attempts, 1), initial=1.0, maximum=60))
                return SendOutcome.RETRY
            return self._failed_attempt(item, error)
        self._mark_sent(item, result.get("id"), "sent")
        return SendOutcome.SENT

    def _mark_in_flight(self, item: OutboxItem) -> None:
        """Commit the attempt before it is made: after any crash the reply is looked up before it is sent again."""
        item.last_attempt_at = utcnow()
        item.attempts += 1
        item.ambiguous = True
        item.next_attempt_at = utcnow() + IN_FLIGHT_GRACE
        db.session.commit()

    def _message(self, item: OutboxItem) -> dict[str, Any]:
        payload = item.payload
        if item.kind == OutboxKind.OPS_ALERT:
            return {"type": "stream", "to": payload["stream"], "topic": payload["topic"], "content": payload["content"]}
        recipient = payload.get("to_user_id") or payload["to"]
        return {"type": "private", "to": json.dumps([recipient]), "content": payload["content"]}

    def _mark_sent(self, item: OutboxItem, external_id: object, how: str) -> None:
        item.mark_sent()
        item.ambiguous = False
        item.external_id = str(external_id) if external_id is not None else None
        ZULIP_SENT.labels(item.kind.value).inc()
        if item.kind == OutboxKind.CHAT_REPLY and item.sent_at is not None:
            REPLY_LATENCY.observe(max((item.sent_at - item.created_at).total_seconds(), 0.0))
        log.info("%s %s to %s %s", item.kind.value, item.id, _addressee(item), how)

    def _failed_attempt(self, item: OutboxItem, error: ZulipError) -> SendOutcome:
        item.last_error = str(error)[:500]
        item.ambiguous = error.ambiguous  # the lookup before this attempt cleared any earlier doubt
        if not error.retryable or item.attempts >= self.settings.zulip_reply_max_attempts:
            item.status = OutboxStatus.FAILED
            ZULIP_FAILED.labels(item.kind.value).inc()
            log.error("%s %s to %s failed for good after %d attempt(s): %s",
                      item.kind.value, item.id, _addressee(item), item.attempts, error)
            return SendOutcome.FAILED
        item.next_attempt_at = utcnow() + timedelta(seconds=backoff(item.attempts, initial=1.0, maximum=300.0))
        log.warning("reply %s: attempt %d failed (%s); retrying", item.id, item.attempts, error)
        return SendOutcome.RETRY

    def _already_sent(self, item: OutboxItem) -> int | None:
        """The id of this reply in the conversation, if an earlier uncertain attempt did deliver it."""
        result = self.api.call("messages", "GET", {
            "anchor": "newest", "num_before": LOOKBACK_MESSAGES, "num_after": 0, "apply_markdown": "false",
            "narrow": json.dumps(self._conversation(item)),
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

    def _conversation(self, item: OutboxItem) -> list[dict[str, Any]]:
        """The narrow for the direct messages with the student (or the ops stream's topic, for an alert).

        Zulip takes a ``dm`` operand as a string of emails or a list of integer user ids,
        nothing else; servers before feature level 177 call the operator ``pm-with``.
        """
        if item.kind == OutboxKind.OPS_ALERT:
            return [{"operator": "stream", "operand": item.payload["stream"]},
                    {"operator": "topic", "operand": item.payload["topic"]}]
        user_id = item.payload.get("to_user_id")
        operand: str | list[int] = [int(user_id)] if isinstance(user_id, int) else str(item.payload["to"])
        operator = "dm" if self.api.feature_level >= DM_FEATURE_LEVEL else "pm-with"
        return [{"operator": operator, "operand": operand}]

    def _previous_reply_id(self, item: OutboxItem) -> int:
        query = sa.select(sa.func.max(sa.cast(OutboxItem.external_id, sa.BigInteger))).where(
            OutboxItem.student_id == item.student_id, OutboxItem.kind == item.kind,
            OutboxItem.status == OutboxStatus.SENT, OutboxItem.id < item.id)
        return int(db.session.scalar(query) or 0)


def _addressee(item: OutboxItem) -> str:
    if item.kind == OutboxKind.OPS_ALERT:
        return f"#{item.payload['stream']} > {item.payload['topic']}"
    return f"student {item.student_id}"


StatusReport = Callable[[str | None], None]


def run_delivery_loop(delivery: ReplyDelivery, stop: StopFlag, idle_seconds: float,
                      report: StatusReport = lambda error: None) -> None:
    """Send replies until stopped, waking on NOTIFY when one is committed (PostgreSQL) or on a timer.

    ``report(error)`` tells the owner how the sender is doing (None: fine), for ``/health``.
    Trouble with Zulip itself (unreachable, a refused key) is one log line per attempt and
    a back-off: the next attempt builds the client again with the key configured then.
    """
    listener: OutboxListener | None = None
    errors = 0
    try:  # whatever ends the sender (a failed claim or LISTEN among them) gives its partition back
        if not delivery.claim_partition(stop):
            return
        listener = OutboxListener(db.engine) if is_postgresql() else None
        while not stop.stopping:
            try:
                sent = delivery.run_once()
                due_in = delivery.next_due_in()
                errors = 0
                report(None)
            except Stopping:
                break
            except ZulipError as error:
                errors += 1
                delay = backoff(errors, initial=1.0, maximum=60)
                log.error("reply sender %d: %s; trying again in %.0f s", delivery.partition, error, delay)
                report(str(error))
                db.session.rollback()
                stop.event.wait(delay)
                continue
            except Exception as error:
                errors += 1
                log.exception("reply delivery pass failed (%d in a row)", errors)
                report(f"{error.__class__.__name__}: {error}"[:300])
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
