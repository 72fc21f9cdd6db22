"""The outbox dispatcher: every pending effect delivered by its kind's handler, each exactly once.

Each feature registers a :class:`Handler` for its kinds (chat replies in app/zulip/, ops
alerts in app/alerts/, grades and sheet rows in app/grading/, admin jobs in app/admin/,
GitHub repositories and reviews in app/github/); the dispatcher owns the rest:

- **Claims.** Due items are selected ``FOR UPDATE SKIP LOCKED``, so several dispatchers
  (processes or threads) never take the same item.
- **Order.** An ordered handler's items form one queue per student (items of no student
  form one queue of their own): only a queue's oldest pending item is ever a candidate,
  and the dispatcher delivering a queue holds its advisory lock until that item's
  outcome is committed. A handler may commit in the middle of an attempt (a chat reply
  is marked in flight before it leaves), and the queue still stays with it. An item that
  must wait holds back the later ones of its queue, never another queue.
- **Batches.** A handler that lets the dispatcher mark its attempts in flight
  (:class:`InFlightHandler`: chat replies, alerts) is served in batches on one Core
  connection (app/outbox/batch.py): up to BATCH queue heads of different queues claimed,
  locked and marked in flight in one transaction, committed before anything is sent; then
  the attempts, one per queue; then every outcome in one transaction; only then are the
  queues given back.
- **Isolation.** A handler that raises is logged, its item rescheduled with the one
  back-off, and the next item goes on; :class:`Unavailable` (the platform refuses us as a
  whole, e.g. a rotated key) charges no item and pauses that handler only.

After a crash (even SIGKILL) the advisory locks go with the dead process's connections,
and what a handler committed before its external call tells the next attempt to look
before it repeats anything.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.db import db, is_postgresql, utcnow
from app.loop import StopFlag, advisory_unlock, backoff, isolated, try_advisory_lock
from app.outbox.batch import BatchClaims, queue_head
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus

log = logging.getLogger(__name__)
BATCH = 50  # items per handler and pass, so every handler gets its turn
PAUSE_REPORTED_FOR = 10.0  # seconds a pause is still reported after it ends, so /health does not flicker
CANDIDATES = 20  # queue heads looked at per claim; a head whose queue another dispatcher holds is passed over


Queue = tuple[int, int]  # the advisory lock of one queue: (handler's lock class, student id or item id)
Claimed = tuple[OutboxItem, Queue | None]


class Outcome(enum.Enum):
    """What came of one attempt; the handler has written its consequences onto the item."""

    SENT = "sent"  # done for good
    RETRY = "retry"  # tried and failed for now: ``next_attempt_at`` says when to try again
    WAITING = "waiting"  # not tried: it waits for someone (a link, a sync, an authorization)
    FAILED = "failed"  # parked with its reason where admins see it; its queue goes on
    STOPPING = "stopping"  # the process is stopping: nothing was attempted


class Unavailable(Exception):
    """The handler's platform cannot be used at all (unreachable, the key refused): no item's fault.

    The handler leaves the item as it found it (committed); the dispatcher pauses this
    handler with a back-off and reports the reason in its heartbeat.
    """


class Handler(Protocol):
    """Delivers one kind of effect. ``deliver`` runs in the dispatcher's transaction, with the item claimed."""

    name: str
    kinds: tuple[OutboxKind, ...]
    ordered: bool  # one queue per student, in id order
    lock_class: int  # the advisory-lock namespace of this handler's queues

    def deliver(self, item: OutboxItem) -> Outcome: ...


class InFlightHandler(Handler, Protocol):
    """A handler whose attempts the dispatcher marks in flight itself, a batch at a time (app/outbox/batch.py).

    ``deliver_claimed`` gets the item as it was before the mark, detached from any session,
    and records its attempt on it as the mark did (``attempts``, ``ambiguous``); it commits
    nothing and never changes the payload: the dispatcher stores every item of the batch at once.
    """

    in_flight: timedelta  # the lease of a claimed item: after a crash, its attempt is looked for once it ends
    attempt_timeout: timedelta  # the longest one attempt takes: none starts too late to end within the lease

    def deliver_claimed(self, item: OutboxItem) -> Outcome: ...


def _in_flight(handler: Handler) -> InFlightHandler | None:
    return handler if hasattr(handler, "deliver_claimed") else None  # type: ignore[return-value]


@dataclass
class _Pause:
    errors: int = 0
    until: float = 0.0
    reason: str | None = None


@dataclass
class Dispatcher:
    """One dispatcher: one database session, one lock connection. Several may run, in threads or processes."""

    handlers: Sequence[Handler]
    stop: StopFlag = field(default_factory=StopFlag)
    _pauses: dict[str, _Pause] = field(default_factory=dict)
    _batches: BatchClaims | None = None

    def run_once(self) -> bool:
        """One pass over every handler; True if any item was attempted."""
        return self.deliver_due() > 0

    def deliver_due(self) -> int:
        """Deliver what is due, up to BATCH items per handler; the number of attempts made."""
        done = 0
        due = self._due_kinds()
        for handler in self.handlers:
            if self._paused(handler) or (due is not None and due.isdisjoint(handler.kinds)):
                continue
            batched = _in_flight(handler)
            if batched is not None and is_postgresql():
                done += self._deliver_batches(batched)
                continue
            count = 0
            while count < BATCH and not self.stop.stopping:
                result = self.process_one(handler)
                if result is None:
                    break
                count += 1
                if result[1] is Outcome.STOPPING or self._paused(handler):
                    break
            done += count
        return done

    def _due_kinds(self) -> set[OutboxKind] | None:
        """The kinds with an item due now (None: not known, try every handler)."""
        if not is_postgresql():
            return None
        return self._batch_claims().due_kinds([kind for handler in self.handlers for kind in handler.kinds], utcnow())

    def _deliver_batches(self, handler: InFlightHandler) -> int:
        """Batches of ``handler``'s items until BATCH were attempted or none is due; the number attempted."""
        count = 0
        while count < BATCH and not self.stop.stopping and not self._paused(handler):
            attempted = self._deliver_batch(handler, BATCH - count)
            if attempted == 0:
                break
            count += attempted
        return count

    def _deliver_batch(self, handler: InFlightHandler, limit: int) -> int:
        """Claim up to ``limit`` queue heads at once, attempt each, store every outcome at once; the number attempted.

        An item not attempted (stopping, the handler paused, or too late to end within its
        lease) is stored as it was before its claim: due again, and charged nothing.
        """
        claims = self._batch_claims()
        items = claims.claim(handler.kinds, handler.lock_class, limit, utcnow(), handler.in_flight)
        if not items:
            return 0
        start_by = time.monotonic() + (handler.in_flight - handler.attempt_timeout).total_seconds()
        attempted = 0
        try:
            for item in items:
                if self.stop.stopping or self._paused(handler) or time.monotonic() > start_by:
                    break
                attempted += 1
                if self._attempt_claimed(handler, item) is Outcome.STOPPING:
                    break
            claims.write(items)
        finally:
            claims.release()
            db.session.rollback()  # ends what a handler read through the session (a lookup's previous reply)
        return attempted

    def _attempt_claimed(self, handler: InFlightHandler, item: OutboxItem) -> Outcome | None:
        """One attempt at a claimed item, its outcome left on the item; a crash keeps the in-flight mark."""
        attempts = item.attempts

        def attempt() -> Outcome:
            try:
                outcome = handler.deliver_claimed(item)
            except Unavailable as error:
                self._pause(handler, str(error))
                return Outcome.WAITING
            self._pauses.pop(handler.name, None)
            return outcome

        def crashed(error: Exception) -> None:
            item.attempts, item.ambiguous = attempts + 1, True  # it may have gone out: the next attempt looks first
            item.last_error = f"{error.__class__.__name__}: {error}"[:2000]
            item.next_attempt_at = utcnow() + timedelta(seconds=backoff(item.attempts, initial=2.0, maximum=600.0))

        return isolated(f"outbox {item.id} ({item.kind.value})", attempt, crashed)

    def _batch_claims(self) -> BatchClaims:
        if self._batches is None:
            self._batches = BatchClaims(db.engine)
        return self._batches

    def process_one(self, handler: Handler, *, due_only: bool = True,
                    exclude: Sequence[int] = ()) -> tuple[int, Outcome | None] | None:
        """Claim one item of ``handler`` and deliver it; (id, outcome), outcome None if it crashed.
        None when there is nothing to claim. ``due_only=False`` takes items before their time (``grades sync``)."""
        claimed = self._claim(handler, due_only, exclude)
        if claimed is None:
            return None
        item, queue = claimed
        item_id = item.id
        try:
            return item_id, self._deliver(handler, item)
        finally:
            db.session.rollback()
            self._unlock(queue)

    def _deliver(self, handler: Handler, item: OutboxItem) -> Outcome | None:
        """One attempt, its outcome committed; a crash is rescheduled and the caller goes on."""
        item_id = item.id

        def attempt() -> Outcome:
            try:
                outcome = handler.deliver(item)
            except Unavailable as error:
                db.session.rollback()
                self._pause(handler, str(error))
                return Outcome.WAITING
            db.session.commit()
            self._pauses.pop(handler.name, None)
            return outcome

        return isolated(f"outbox {item_id} ({item.kind.value})", attempt,
                        lambda error: self._reschedule_crashed(item_id, error))

    # --- claims ---------------------------------------------------------------------------------

    def _claim(self, handler: Handler, due_only: bool, exclude: Sequence[int]) -> Claimed | None:
        """The first candidate whose queue is free, its row and queue locked; None if there is none.

        Candidates are read without row locks, on the batches' connection (an empty pass never
        touches the session); only the one taken is locked (``FOR UPDATE SKIP LOCKED``), after its
        queue, and only if it is still its queue's head: a row lock is a write, and locking every
        candidate cost PostgreSQL more than the delivery's own updates. Both statements are built
        once per handler (:func:`_candidates`, :func:`_head`).
        """
        params: dict[str, Any] = {"now": utcnow(), **({"exclude": list(exclude)} if exclude else {})}
        candidates = _candidates(handler.kinds, handler.ordered, due_only, bool(exclude))
        if not is_postgresql():
            item_id = db.session.scalars(candidates.limit(1), params).first()
            item = db.session.get(OutboxItem, item_id) if item_id is not None else None
            if item is None:
                db.session.rollback()
            return (item, None) if item is not None else None
        for item_id, student_id in self._batch_claims().read(candidates, params):  # no session while there is nothing
            queue = (handler.lock_class, (student_id or 0) if handler.ordered else item_id)
            if not try_advisory_lock(self._lock_connection(), queue):
                continue
            item = db.session.scalars(_head(handler.kinds, handler.ordered), {"id": item_id}).first()
            if item is not None:
                return item, queue
            self._unlock(queue)
        db.session.rollback()  # no round trip unless a head was looked at
        return None

    def _lock_connection(self) -> Connection:
        """The batches' autocommit connection: its session holds the queue locks of every handler."""
        return self._batch_claims().connection()

    def _unlock(self, queue: Queue | None) -> None:
        if queue is not None and self._batches is not None:
            advisory_unlock(self._batches.connection(), queue)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Give every queue back: the locks belong to the database session, so close it (or drop it)."""
        if self._batches is not None:
            self._batches.close()
            self._batches = None

    # --- failures -------------------------------------------------------------------------------

    def _reschedule_crashed(self, item_id: int, error: Exception) -> None:
        db.session.rollback()
        item = db.session.get(OutboxItem, item_id)
        if item is not None:
            item.attempts += 1
            item.last_error = f"{error.__class__.__name__}: {error}"[:2000]
            item.next_attempt_at = utcnow() + timedelta(seconds=backoff(item.attempts, initial=2.0, maximum=600.0))
            db.session.commit()

    def _pause(self, handler: Handler, reason: str) -> None:
        pause = self._pauses.setdefault(handler.name, _Pause())
        pause.errors += 1
        delay = backoff(pause.errors, initial=1.0, maximum=60.0)
        pause.until, pause.reason = time.monotonic() + delay, reason
        log.error("%s: %s; trying again in %.0f s", handler.name, reason, delay)

    def _paused(self, handler: Handler) -> bool:
        pause = self._pauses.get(handler.name)
        return pause is not None and time.monotonic() < pause.until

    def errors(self) -> dict[str, str]:
        """For the heartbeat: each handler paused now or a moment ago (between two pauses it is tried again), and why."""
        now = time.monotonic()
        return {name: pause.reason for name, pause in self._pauses.items()
                if pause.reason and now < pause.until + PAUSE_REPORTED_FOR}

    def next_due_in(self) -> float | None:
        """Seconds until the earliest pending item of a handler not paused is due (None: nothing pending)."""
        kinds = [kind for handler in self.handlers if not self._paused(handler) for kind in handler.kinds]
        if not kinds:
            return None
        if is_postgresql():
            due = self._batch_claims().next_due(tuple(kinds))
            return None if due is None else max((due - utcnow()).total_seconds(), 0.0)
        due = db.session.scalar(sa.select(sa.func.min(OutboxItem.next_attempt_at)).where(
            OutboxItem.kind.in_(kinds), OutboxItem.status == OutboxStatus.PENDING))
        db.session.rollback()
        return None if due is None else max((due - utcnow()).total_seconds(), 0.0)


@lru_cache(maxsize=64)
def _candidates(kinds: tuple[OutboxKind, ...], ordered: bool, due_only: bool, excluding: bool) -> sa.Select[int, int | None]:
    """Pending items of ``kinds`` (``now``: due by then; ``exclude``: ids passed over), oldest due first;
    for an ordered handler only queue heads, CANDIDATES of them."""
    query = sa.select(OutboxItem.id, OutboxItem.student_id).where(
        OutboxItem.kind.in_(kinds), OutboxItem.status == OutboxStatus.PENDING)
    if due_only:
        query = query.where(OutboxItem.next_attempt_at <= sa.bindparam("now"))
    if excluding:
        query = query.where(OutboxItem.id.not_in(sa.bindparam("exclude", expanding=True)))
    if ordered:
        query = query.where(queue_head(kinds))
    return query.order_by(OutboxItem.next_attempt_at, OutboxItem.id).limit(CANDIDATES if ordered else 1)


@lru_cache(maxsize=64)
def _head(kinds: tuple[OutboxKind, ...], ordered: bool) -> sa.Select[Any]:
    """The item ``id``, row-locked, if it is still pending and (ordered) still its queue's oldest pending
    item, seen now that the queue is ours (the candidates' snapshot may predate the commit of an item
    the queue's last holder rescheduled)."""
    query = sa.select(OutboxItem).where(OutboxItem.id == sa.bindparam("id"), OutboxItem.status == OutboxStatus.PENDING)
    if ordered:
        query = query.where(queue_head(kinds))
    return query.with_for_update(skip_locked=True).execution_options(populate_existing=True)
