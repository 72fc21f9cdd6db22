"""Claiming outbox items in batches and writing their outcomes at once, on one Core connection.

Used by the dispatcher (app/outbox/dispatcher.py) for handlers whose attempts it marks in
flight itself (chat replies and alerts). One batch is four round trips whatever its size:

1. the due queue heads, each queue's advisory lock tried in the same statement;
2. the heads still pending and still first in their queues, seen after the locks were taken,
   row-locked (``SKIP LOCKED``) and marked in flight (``attempts + 1``, ``ambiguous``, a lease
   in ``next_attempt_at``) in one ``UPDATE … RETURNING``, committed: nothing is sent before it;
3. after the attempts, every item's new state in one ``UPDATE … FROM jsonb_to_recordset``;
4. every advisory lock of the connection given back: the queues go free only once their outcomes
   are committed.

Each step is one statement on an autocommit connection, so each is its own transaction and
no BEGIN or COMMIT costs a round trip. The advisory locks are session-level locks of this
connection, so they outlive those transactions and are held exactly while a queue's item is out; if the process dies, they go with
the connection and the lease (``next_attempt_at``) makes the next attempt wait until a send
still under way has surely landed, then look for it before repeating it.

The connection is kept for the dispatcher's life (no pool checkout and no pre-ping per claim);
one found dead when a claim starts is replaced and the claim made again. The dispatcher's
one-at-a-time handlers take their queue locks on it too (one thread, one step at a time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import aliased

from app.loop import advisory_unlock_all, try_advisory_lock_clause
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus

log = logging.getLogger(__name__)
OUTBOX = OutboxItem.__table__
# What an attempt may change; the payload is not among them (a batched handler never rewrites it).
WRITTEN = ("status", "attempts", "ambiguous", "next_attempt_at", "last_attempt_at", "last_error", "external_id",
           "sent_at")
_WRITE_OUTCOMES = sa.text("""
    UPDATE outbox AS o SET status = v.status, attempts = v.attempts, ambiguous = v.ambiguous,
        next_attempt_at = v.next_attempt_at, last_attempt_at = v.last_attempt_at, last_error = v.last_error,
        external_id = v.external_id, sent_at = v.sent_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id integer, status varchar, attempts integer, ambiguous boolean,
        next_attempt_at timestamptz, last_attempt_at timestamptz, last_error text, external_id varchar,
        sent_at timestamptz)
    WHERE o.id = v.id
""")
# Each kind looked up in ix_outbox_pending on its own: what it costs does not grow with what is pending.
_DUE_KINDS = sa.text("""
    SELECT kind FROM unnest(CAST(:kinds AS varchar[])) AS kind
    WHERE EXISTS (SELECT 1 FROM outbox WHERE outbox.kind = kind.kind AND status = 'pending' AND next_attempt_at <= :now)
""")
T = TypeVar("T")


class BatchClaims:
    """One connection's batches: claim, write the outcomes, give the queues back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def claim(self, kinds: tuple[OutboxKind, ...], lock_class: int, limit: int, now: datetime,
              lease: timedelta) -> list[OutboxItem]:
        """Up to ``limit`` queue heads, their queues locked and their in-flight marks committed.

        Each item comes back as it was before the mark (detached from any session): the
        handler records the attempt on it as the mark did, and :meth:`write` stores the result.
        """
        return self._reconnecting(lambda: self._claim(kinds, lock_class, limit, now, lease))

    def _claim(self, kinds: tuple[OutboxKind, ...], lock_class: int, limit: int, now: datetime,
               lease: timedelta) -> list[OutboxItem]:
        connection = self.connection()
        ids = list(connection.scalars(_locked_heads(kinds), {"now": now, "limit": limit, "lock_class": lock_class}))
        if not ids:
            return []
        rows = connection.execute(_mark_in_flight(kinds), {"ids": ids, "now": now, "lease": now + lease}).all()
        if not rows:
            self.release()  # every locked head was taken meanwhile
        return sorted((OutboxItem(**row._mapping) for row in rows), key=lambda item: item.id)

    def write(self, items: Sequence[OutboxItem]) -> None:
        """Every item's state after its attempt, in one statement (one transaction).

        If the database refuses the batch for something in it (not a lost connection), each
        item is written on its own, so one bad row costs only itself; an item not written
        keeps its committed in-flight mark and is looked up once its lease ends.
        """
        try:
            self._write(items)
        except sa.exc.DBAPIError as error:
            if error.connection_invalidated or len(items) == 1:
                raise
            log.warning("outbox: a batch of %d outcomes was refused (%s); writing them one by one", len(items),
                        str(error.orig).strip())
            for item in items:
                try:
                    self._write([item])
                except sa.exc.DBAPIError:
                    log.exception("outbox %s: its outcome could not be written; it is looked up after its lease", item.id)

    def _write(self, items: Sequence[OutboxItem]) -> None:
        rows = [{"id": item.id, **{name: _json_value(getattr(item, name)) for name in WRITTEN}} for item in items]
        self.connection().execute(_WRITE_OUTCOMES, {"rows": json.dumps(rows)})

    def release(self) -> None:
        """Give back every queue this connection holds (outcomes committed, or the connection is gone)."""
        if self._connection is None:
            return
        try:
            advisory_unlock_all(self._connection)
        except sa.exc.DBAPIError:
            self.close()  # the locks went with the connection

    def next_due(self, kinds: tuple[OutboxKind, ...]) -> datetime | None:
        """The earliest ``next_attempt_at`` of pending items of ``kinds`` (None: nothing pending)."""
        rows = self.read(_next_due(kinds), {})
        return rows[0][0] if rows else None

    def due_kinds(self, kinds: Sequence[OutboxKind], now: datetime) -> set[OutboxKind]:
        """Which of ``kinds`` have an item due by ``now``: one round trip, so a pass skips the handlers with nothing to do."""
        rows = self.read(_DUE_KINDS, {"kinds": [kind.value for kind in kinds], "now": now})
        return {OutboxKind(row[0]) for row in rows}

    def read(self, statement: sa.Executable, params: dict[str, Any]) -> list[Any]:
        """The rows of a read-only ``statement``."""
        return self._reconnecting(lambda: list(self.connection().execute(statement, params).all()))

    def _reconnecting(self, work: Callable[[], T]) -> T:
        """``work``, once more on a new connection if the server ended this one (a restart, a failover,
        ``pg_terminate_backend``). Safe for a claim: a mark committed before the connection was lost
        leaves its item in flight, so the second try does not take it again."""
        try:
            return work()
        except sa.exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
            log.warning("outbox claims: the database connection was lost (%s); connecting again",
                        str(error.orig).strip())
            self.close()
            return work()

    def connection(self) -> Connection:
        """The connection, opened (in autocommit) on first use or after the last one was lost."""
        if self._connection is None or self._connection.invalidated or self._connection.closed:
            self.close()
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def close(self) -> None:
        """Close the connection (its advisory locks go with it); a dead one is dropped."""
        if self._connection is None:
            return
        try:
            self._connection.close()
        except sa.exc.DBAPIError:
            self._connection.invalidate()
        self._connection = None


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, OutboxStatus):
        return value.value
    if isinstance(value, str):
        return value.replace("\x00", "")  # PostgreSQL text holds no NUL (an error text from outside might)
    return value


@lru_cache(maxsize=16)
def _locked_heads(kinds: tuple[OutboxKind, ...]) -> sa.Select[int]:
    """Ids of up to ``limit`` due queue heads whose queue lock this session took (or already holds).

    The lock is tried in the outer query, on the limited candidates only (a volatile function is
    never pushed below a LIMIT). A queue whose head then turns out taken stays locked until the
    batch's :meth:`BatchClaims.release`: it waits one batch, nothing worse.
    """
    candidates = sa.select(OutboxItem.id, OutboxItem.student_id, OutboxItem.next_attempt_at).where(
        OutboxItem.kind.in_(kinds), OutboxItem.status == OutboxStatus.PENDING,
        OutboxItem.next_attempt_at <= sa.bindparam("now"), queue_head(kinds),
    ).order_by(OutboxItem.next_attempt_at, OutboxItem.id).limit(sa.bindparam("limit")).subquery("candidates")
    queue = sa.func.coalesce(candidates.c.student_id, 0)
    return sa.select(candidates.c.id).where(try_advisory_lock_clause(sa.bindparam("lock_class"), queue))


@lru_cache(maxsize=16)
def _mark_in_flight(kinds: tuple[OutboxKind, ...]) -> sa.Update:
    """Mark the locked heads ``ids`` in flight, if still pending, due and first in their queue (seen now,
    after the locks: the last holder may have committed meanwhile); returns them as they were before."""
    heads = sa.select(OUTBOX).where(
        OUTBOX.c.id.in_(sa.bindparam("ids", expanding=True)), OUTBOX.c.status == OutboxStatus.PENDING,
        OUTBOX.c.next_attempt_at <= sa.bindparam("now"), queue_head(kinds, OUTBOX),
    ).with_for_update(skip_locked=True).cte("heads")
    return (sa.update(OUTBOX).where(OUTBOX.c.id == heads.c.id)
            .values(attempts=OUTBOX.c.attempts + 1, ambiguous=True, last_attempt_at=sa.bindparam("now"),
                    next_attempt_at=sa.bindparam("lease"))
            .returning(*heads.c))


@lru_cache(maxsize=16)
def _next_due(kinds: tuple[OutboxKind, ...]) -> sa.Select[datetime]:
    return sa.select(sa.func.min(OutboxItem.next_attempt_at)).where(
        OutboxItem.kind.in_(kinds), OutboxItem.status == OutboxStatus.PENDING)


def queue_head(kinds: tuple[OutboxKind, ...], item: Any = OutboxItem) -> Any:
    """``item`` (the model or a table of outbox rows; itself pending, of ``kinds``) is its queue's head: the
    oldest pending item of the same student (or, for items of no student, of none).

    A scalar subquery, looked up per candidate in ix_outbox_pending_queue by queue and id. Written
    as ``NOT EXISTS`` (an older pending item), PostgreSQL turned it into an anti join, and on a
    table whose statistics predate a burst it scanned every pending item of the kind for each
    candidate: a claim of 16 items read 13 792 rows and took 28 ms.
    """
    item_id, item_student = (item.id, item.student_id) if item is OutboxItem else (item.c.id, item.c.student_id)
    queue = aliased(OutboxItem)
    oldest = sa.select(sa.func.min(queue.id)).where(
        queue.kind.in_(kinds), queue.status == OutboxStatus.PENDING,
        sa.func.coalesce(queue.student_id, 0) == sa.func.coalesce(item_student, 0)).scalar_subquery()
    return item_id == oldest
