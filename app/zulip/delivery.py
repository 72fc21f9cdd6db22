"""Delivering chat replies from the outbox to Zulip: in order per student, each exactly once.

The dispatcher (app/outbox/) keeps a student's replies in one queue: a reply that cannot
go yet holds back the later ones, never another student's. An attempt that may have
reached Zulip (timeout, dropped connection, 5xx) marks the reply ambiguous: before
sending it again we look in the conversation for it, so a retry never doubles a
message. Every attempt is marked in flight (committed) before the request leaves, so
even after a SIGKILL mid-send the next attempt looks first. A reply that keeps failing
is marked failed with its reason (``./manage.py outbox list --failed``). A refused API
key fails no reply: it pauses the handler (:class:`~app.outbox.dispatcher.Unavailable`)
until the key works again. Ops alerts take the same path (app/alerts/delivery.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.loop import backoff
from app.metrics.registry import REPLY_LATENCY, ZULIP_FAILED, ZULIP_SENT
from app.outbox.dispatcher import Outcome, Unavailable
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.zulip.api import RateLimited, Stopping, Unauthorized, ZulipApi, ZulipError

log = logging.getLogger(__name__)
LOCK_CLASS = 7301  # pg advisory lock namespace of the students' reply queues
LOOKBACK_MESSAGES = 50
SEND_TIMEOUT = 15.0  # seconds a POST /messages may take
# After a crash mid-send the attempt may still land: look for it only once it surely has.
IN_FLIGHT_GRACE = timedelta(seconds=SEND_TIMEOUT + 5)
DM_FEATURE_LEVEL = 177  # Zulip 7.0: the `dm` narrow operator (`pm-with` before)


class ZulipSender:
    """The outbox handler of chat replies: one message to the student, in order, exactly once.

    The dispatcher (app/outbox/dispatcher.py) keeps each student's replies in one queue;
    this class makes one attempt at one of them. Subclasses send other kinds the same way
    (ops alerts, app/alerts/delivery.py).
    """

    name = "chat replies"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.CHAT_REPLY,)
    ordered = True
    lock_class = LOCK_CLASS
    in_flight = IN_FLIGHT_GRACE
    attempt_timeout = timedelta(seconds=SEND_TIMEOUT)

    def __init__(self, api: ZulipApi, settings: Settings) -> None:
        self.api, self.settings = api, settings

    def deliver(self, item: OutboxItem) -> Outcome:
        """One attempt; Unavailable when Zulip cannot be used at all (unreachable, the key refused):
        that is no reply's fault, and no reply is charged an attempt for it."""
        return self._attempt(item, db.session.commit)

    def deliver_claimed(self, item: OutboxItem) -> Outcome:
        """As :meth:`deliver`, for a reply whose in-flight mark the dispatcher committed with its batch's
        (and whose outcome it stores with the batch's): nothing is committed here."""
        return self._attempt(item, _stored_by_the_dispatcher)

    def _attempt(self, item: OutboxItem, commit: Callable[[], None]) -> Outcome:
        try:
            self.api.client()
            return self.send(item, commit)
        except Stopping:
            return Outcome.STOPPING
        except ZulipError as error:  # Zulip as a whole, not this reply (send() handles the reply's own errors)
            raise Unavailable(str(error)) from error

    def send(self, item: OutboxItem, commit: Callable[[], None]) -> Outcome:
        """One attempt at one reply; the caller commits the outcome.

        The attempt is committed as in flight before the request leaves: if the process
        dies while Zulip holds the request, the next attempt finds the reply instead of
        sending it again. ``commit`` makes the item's state durable (the session's commit, or
        nothing when the dispatcher stores the item itself). Raises Unauthorized (a bad key
        fails no reply).
        """
        in_flight = False
        try:
            if item.ambiguous and (found := self._already_sent(item)) is not None:
                self._mark_sent(item, found, "found after an uncertain attempt")
                return Outcome.SENT
            self._mark_in_flight(item)
            commit()
            in_flight = True
            result = self.api.call("messages", "POST", self.message(item), timeout=SEND_TIMEOUT)
        except Stopping:
            if in_flight:  # the budget said stop before the request left
                item.ambiguous, item.attempts, item.next_attempt_at = False, max(item.attempts - 1, 0), utcnow()
            return Outcome.STOPPING
        except RateLimited as error:
            if in_flight:  # refused before it was looked at: nothing went out, and it is not the reply's fault
                item.ambiguous, item.attempts = False, max(item.attempts - 1, 0)
            item.next_attempt_at = utcnow() + timedelta(seconds=error.retry_after)
            item.last_error = str(error)
            return Outcome.RETRY
        except Unauthorized:
            if in_flight:  # refused: nothing went out (a failed lookup leaves the doubt as it was)
                item.ambiguous, item.attempts = False, max(item.attempts - 1, 0)
            item.next_attempt_at = utcnow()
            commit()
            raise
        except ZulipError as error:
            if not in_flight:  # the lookup failed: the earlier attempt is still in doubt, and none was made now
                item.last_error = str(error)[:500]
                item.next_attempt_at = utcnow() + timedelta(seconds=backoff(max(item.attempts, 1), initial=1.0, maximum=60))
                return Outcome.RETRY
            return self._failed_attempt(item, error)
        self._mark_sent(item, result.get("id"), "sent")
        return Outcome.SENT

    def _mark_in_flight(self, item: OutboxItem) -> None:
        """Record the attempt before it is made (the caller commits it before the request leaves): after any
        crash the reply is looked up before it is sent again."""
        item.last_attempt_at = utcnow()
        item.attempts += 1
        item.ambiguous = True
        item.next_attempt_at = utcnow() + IN_FLIGHT_GRACE

    def message(self, item: OutboxItem) -> dict[str, Any]:
        payload = item.payload
        recipient = payload.get("to_user_id") or payload["to"]
        return {"type": "private", "to": json.dumps([recipient]), "content": payload["content"]}

    def _mark_sent(self, item: OutboxItem, external_id: object, how: str) -> None:
        item.mark_sent()
        item.ambiguous = False
        item.external_id = str(external_id) if external_id is not None else None
        ZULIP_SENT.labels(item.kind.value).inc()
        if item.kind == OutboxKind.CHAT_REPLY and item.sent_at is not None:
            REPLY_LATENCY.observe(max((item.sent_at - item.created_at).total_seconds(), 0.0))
        # A plain send is on the item (sent_at, external_id) and in the metrics; one found after an
        # uncertain attempt is worth a line at INFO.
        log.log(logging.DEBUG if how == "sent" else logging.INFO, "%s %s to %s %s", item.kind.value, item.id,
                self.addressee(item), how)

    def _failed_attempt(self, item: OutboxItem, error: ZulipError) -> Outcome:
        item.last_error = str(error)[:500]
        item.ambiguous = error.ambiguous  # the lookup before this attempt cleared any earlier doubt
        if not error.retryable or item.attempts >= self.settings.zulip_reply_max_attempts:
            item.status = OutboxStatus.FAILED
            ZULIP_FAILED.labels(item.kind.value).inc()
            log.error("%s %s to %s failed for good after %d attempt(s): %s",
                      item.kind.value, item.id, self.addressee(item), item.attempts, error)
            return Outcome.FAILED
        item.next_attempt_at = utcnow() + timedelta(seconds=backoff(item.attempts, initial=1.0, maximum=300.0))
        log.warning("reply %s: attempt %d failed (%s); retrying", item.id, item.attempts, error)
        return Outcome.RETRY

    def _already_sent(self, item: OutboxItem) -> int | None:
        """The id of this reply in the conversation, if an earlier uncertain attempt did deliver it."""
        result = self.api.call("messages", "GET", {
            "anchor": "newest", "num_before": LOOKBACK_MESSAGES, "num_after": 0, "apply_markdown": "false",
            "narrow": json.dumps(self.conversation(item)),
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

    def conversation(self, item: OutboxItem) -> list[dict[str, Any]]:
        """The narrow for the direct messages with the student.

        Zulip takes a ``dm`` operand as a string of emails or a list of integer user ids,
        nothing else; servers before feature level 177 call the operator ``pm-with``.
        """
        user_id = item.payload.get("to_user_id")
        operand: str | list[int] = [int(user_id)] if isinstance(user_id, int) else str(item.payload["to"])
        operator = "dm" if self.api.feature_level >= DM_FEATURE_LEVEL else "pm-with"
        return [{"operator": operator, "operand": operand}]

    def addressee(self, item: OutboxItem) -> str:
        return f"student {item.student_id}"

    def _previous_reply_id(self, item: OutboxItem) -> int:
        query = sa.select(sa.func.max(sa.cast(OutboxItem.external_id, sa.BigInteger))).where(
            OutboxItem.student_id == item.student_id, OutboxItem.kind == item.kind,
            OutboxItem.status == OutboxStatus.SENT, OutboxItem.id < item.id)
        return int(db.session.scalar(query) or 0)


def _stored_by_the_dispatcher() -> None:
    """The commit of a batched attempt: the dispatcher committed its in-flight mark and stores its outcome."""
