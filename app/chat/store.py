"""Where a chat message's SQL runs: three round trips on PostgreSQL, the ORM session elsewhere.

Every student message goes through here, so the path is lean (issue 11 §4). Through the
ORM it spent half of its CPU in the Session's machinery for six round trips; the
:class:`LeanStore` sends the same statements, merged, on a DB-API connection the thread keeps, in
psycopg2's autocommit mode, so that ``BEGIN`` and ``COMMIT`` travel with the first and the
last statement. What little work still goes through the ORM (an admin's command, a grade, a
link) runs on the same connection and joins the same transaction:

1. ``BEGIN``, then the sender locked: updated by Zulip id or upserted by email, one statement;
2. the message recorded (``ON CONFLICT DO NOTHING``: a repeat has no second effect) and the
   student's latest run read ``FOR UPDATE``, one statement. It must follow 1 rather than join
   it: a statement's snapshot is taken before it waits for the sender's lock, and would miss
   the run that the sender's previous message created;
3. the outcome's writes (run, step rows, new run, language, reply), then ``COMMIT``.

A batch locks all its senders first, in a fixed order, then runs 2 and 3 per message inside
a savepoint (``SAVEPOINT`` travels with 2, ``RELEASE`` with 3).

The :class:`SessionStore` does the same through the ORM session, one statement at a time,
for SQLite (the demo's console chat).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.chat.dialog import Outcome
from app.chat.models import InboundMessage
from app.db import check_alive, db, is_postgresql, upsert_insert, utcnow
from app.grading.service import queue_run_grade
from app.lessons.catalog import Catalog
from app.metrics.registry import REPLIES_QUEUED
from app.outbox.service import queue_reply
from app.runs.models import LessonRun
from app.runs.service import RunChanges, RunRow, apply_outcome, latest_run, plan_outcome
from app.settings import Settings
from app.students.service import StudentRef, get_or_create_student

log = logging.getLogger(__name__)
# The two statements that every message runs are prepared once per connection (PREPARE, below):
# planning them cost PostgreSQL more than running them.
LOCK_SENDER = """  -- $1 email, $2 full name, $3 Zulip user id, $4 language
WITH by_id AS (
    UPDATE students SET
        email = CASE WHEN EXISTS (SELECT FROM students AS other WHERE other.email = $1 AND other.id <> students.id)
                     THEN students.email ELSE $1 END,
        full_name = CASE WHEN $2 <> '' THEN $2 ELSE students.full_name END
    WHERE zulip_user_id = $3
    RETURNING id, email, language, zulip_user_id
), by_email AS (
    INSERT INTO students (email, full_name, zulip_user_id, language, created_at)
    SELECT $1, $2, $3, $4, now() WHERE NOT EXISTS (SELECT FROM by_id)
    ON CONFLICT (email) DO UPDATE SET
        full_name = CASE WHEN excluded.full_name <> '' THEN excluded.full_name ELSE students.full_name END,
        zulip_user_id = coalesce(excluded.zulip_user_id, students.zulip_user_id)
    RETURNING id, email, language, zulip_user_id
)
SELECT id, email, language, zulip_user_id FROM by_id UNION ALL SELECT id, email, language, zulip_user_id FROM by_email
"""
# The sender's row is locked by now, so this statement's snapshot holds every commit of their earlier messages.
RECORD_AND_LOAD_RUN = """  -- $1 message id, $2 content, $3 student id
WITH message AS (
    INSERT INTO inbound_messages (message_id, content, received_at, student_id)
    VALUES ($1, $2, now(), $3)
    ON CONFLICT (message_id) DO NOTHING RETURNING id
)
SELECT (SELECT id FROM message), run.id, run.lesson_id, run.status, run.step_index, run.points, run.context,
       run.check_failures
FROM (VALUES (1)) AS one LEFT JOIN (
    SELECT id, lesson_id, status, step_index, points, context, check_failures FROM lesson_runs
    WHERE student_id = $3 ORDER BY id DESC LIMIT 1 FOR UPDATE
) AS run ON true
"""
PREPARE = (b"DEALLOCATE ALL;\n"  # idempotent: a failed first round trip may have prepared them already
           b"PREPARE lessonbot_lock_sender (varchar, varchar, bigint, varchar) AS " + LOCK_SENDER.encode() + b";\n"
           b"PREPARE lessonbot_record (varchar, text, integer) AS " + RECORD_AND_LOAD_RUN.encode())
EXECUTE_LOCK_SENDER = "EXECUTE lessonbot_lock_sender (%(email)s, %(full_name)s, %(zulip_user_id)s, %(language)s)"
EXECUTE_RECORD = "EXECUTE lessonbot_record (%(message_id)s, %(content)s, %(student_id)s)"
SET_LANGUAGE = "UPDATE students SET language = %s WHERE id = %s"
INSERT_RESULT = ("INSERT INTO step_results (run_id, step_id, points, attempts, passed_at, source) "
                 "VALUES (%s, %s, %s, 1, %s, %s)")
INSERT_EVENT = "INSERT INTO step_events (run_id, step_id, kind, detail, at) VALUES (%s, %s, %s, %s, %s)"
NEW_RUN_COLUMNS = ("lesson_id", "context", "repo_name", "started_at", "last_activity_at", "step_index", "points",
                   "check_failures", "status", "next_check_at")
INSERT_RUN = (f"INSERT INTO lesson_runs (student_id, {', '.join(NEW_RUN_COLUMNS)}) "
              f"VALUES (%s, {', '.join(['%s'] * len(NEW_RUN_COLUMNS))})")
RUN_COLUMNS = {"last_activity_at", "reminded_at", "check_failures", "step_index", "points", "status", "finished_at",
               "next_check_at"}
INSERT_REPLY = ("INSERT INTO outbox (kind, student_id, payload, status, attempts, next_attempt_at, created_at) "
                "VALUES ('chat_reply', %s, %s, 'pending', 0, now(), now())")


@lru_cache(maxsize=2)
def _record_statement(dialect: str) -> sa.Insert:
    table = InboundMessage.__table__
    return (upsert_insert(table, dialect)
            .values(message_id=sa.bindparam("message_id"), content=sa.bindparam("content"), received_at=sa.func.now(),
                    student_id=sa.bindparam("student_id"))
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(table.c.id))


def record_inbound(message_id: str, content: str, student_id: int) -> bool:
    """Store the message with its sender (whose row the caller has locked); False if it was stored before (a
    concurrent repeat waits, then sees it). The ORM's way, for the :class:`SessionStore`."""
    params = {"message_id": message_id, "content": content, "student_id": student_id}
    return db.session.execute(_record_statement(db.engine.dialect.name), params).first() is not None


@dataclass(frozen=True)
class Recorded:
    """A message stored for the first time (``new``), and its sender's latest run, locked (None: never ran one)."""

    new: bool
    latest_run: RunRow | None


class MessageStore(Protocol):
    """A message's reads and writes, in the order the service makes them; the caller ends the transaction."""

    def lock_sender(self, sender_email: str, full_name: str, zulip_user_id: int | None, language: str) -> StudentRef: ...
    def record(self, message_id: str, content: str, student: StudentRef) -> Recorded: ...
    def persist(self, student: StudentRef, run: RunRow | None, outcome: Outcome, reply: str | None,
                catalog: Catalog, settings: Settings) -> None: ...
    def reply(self, student: StudentRef, content: str) -> None: ...
    def savepoint(self) -> None: ...
    def release_savepoint(self) -> None: ...
    def rollback_to_savepoint(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


@contextmanager
def message_store() -> Iterator[MessageStore]:
    """The lean store on PostgreSQL, the session's on SQLite; rolled back if the caller leaves without committing.

    The message path commits its caller's transaction, as it always has: what the session
    holds (the console's or a test's reads) is committed first, since the message runs on a
    connection of its own.
    """
    if not is_postgresql():
        store: LeanStore | SessionStore = SessionStore()
    else:
        if db.session.registry.has() and db.session().in_transaction():
            db.session.commit()
        store = LeanStore()
    try:
        yield store
    finally:
        store.close()


class _Held(threading.local):
    """The message connection a thread keeps between messages: no pool checkout and return per message."""

    connection: Connection | None = None
    idle_since: float | None = None
    in_use = False


_held = _Held()


def _message_connection() -> tuple[Connection, bool]:
    """The thread's message connection, checked as the pool checks one at checkout (app/db.py check_alive)
    and replaced if the server ended it or the engine changed; a pooled one if the thread's is in use
    already (a message inside a message). Whether it is the thread's."""
    engine = db.engine
    held = _held.connection
    if _held.in_use:
        return engine.connect(), False
    if held is not None:
        try:
            if held.engine is engine and not held.invalidated and not held.closed:
                check_alive(engine, held.connection.dbapi_connection, _held.idle_since)
                _held.in_use = True
                return held, True
        except sa.exc.DisconnectionError as error:
            log.info("the message connection was gone (%s); connecting again", error)
        _discard(held)
        _held.connection = None
    _held.connection, _held.in_use = engine.connect(), True
    return _held.connection, True


def _discard(connection: Connection) -> None:
    """Close a connection that will not be used again, without handing it back to a pool (it may be an old
    engine's, and its session is in autocommit)."""
    try:
        connection.invalidate()
        connection.close()
    except Exception:  # already broken: nothing left to close
        log.debug("closing an old message connection failed", exc_info=True)


class LeanStore:
    """The message path on the thread's own DB-API connection, in psycopg2's autocommit mode.

    Neither the Session nor SQLAlchemy's transaction handling is in the way: their bookkeeping
    cost more CPU than the SQL. Nor is the pool: the thread keeps its connection between
    messages (checking it out and in again was a tenth of a message's CPU), checked as the pool
    would check it. For the message's duration ``db.session`` is an ORM session on
    this same connection, so that what the ORM still does joins the message's transaction.
    SQL waits in ``pending`` until the next round trip that needs an answer (or the commit), so
    that the statements whose results nobody reads travel with one that is read.
    """

    def __init__(self) -> None:
        self.connection, self.held = _message_connection()
        self.dbapi: Any = cast(Any, self.connection.connection.dbapi_connection)
        self.dbapi.autocommit = True  # psycopg2 sends no BEGIN of its own, and its commit and rollback do nothing
        self.cursor: Any = self.dbapi.cursor()
        self.info = self.connection.connection.info  # lives as long as the DB-API connection
        self.pending: list[tuple[str | bytes, Any]] = [("BEGIN", None)]
        if not self.info.get("lessonbot.prepared"):
            self.pending.insert(0, (PREPARE, None))
        self.open = True
        registry = db.session.registry
        self.callers_session = registry() if registry.has() else None
        self.session = Session(bind=self.connection)
        registry.set(self.session)  # type: ignore[arg-type]  # a plain Session: Flask-SQLAlchemy's ignores bind

    def _send(self, sql: str = "", params: dict[str, Any] | None = None) -> None:
        """One round trip: what is pending, then ``sql``. Each statement is bound on its own (psycopg2 binds on
        the client anyway), so that a value holding ``%`` or ``;`` stays a value."""
        statements = [*self.pending, (sql, params)] if sql else self.pending
        self.pending = []
        self.cursor.execute(b";\n".join(self.cursor.mogrify(text, args) for text, args in statements))

    def lock_sender(self, sender_email: str, full_name: str, zulip_user_id: int | None, language: str) -> StudentRef:
        self._send(EXECUTE_LOCK_SENDER, {"email": sender_email, "full_name": full_name, "zulip_user_id": zulip_user_id,
                                         "language": language})
        self.info["lessonbot.prepared"] = True
        return StudentRef(*self.cursor.fetchone())

    def record(self, message_id: str, content: str, student: StudentRef) -> Recorded:
        self._send(EXECUTE_RECORD, {"message_id": message_id, "content": content, "student_id": student.id})
        inbound_id, *run = self.cursor.fetchone()
        return Recorded(inbound_id is not None, RunRow(*run) if run[0] is not None else None)

    def persist(self, student: StudentRef, run: RunRow | None, outcome: Outcome, reply: str | None,
                catalog: Catalog, settings: Settings) -> None:
        """Queue the outcome's writes (sent with the next round trip); a grade goes through the ORM at once."""
        changes = plan_outcome(student.language, run, outcome, catalog, settings, utcnow())
        if changes.language is not None:
            self.pending.append((SET_LANGUAGE, (changes.language, student.id)))
        if run is not None:
            self._update_run(run, changes)
            if changes.completed:  # in this transaction: the grade is never lost nor doubled
                queue_run_grade(run.id, run.lesson_id, changes.run.get("points", run.points), student.id, student.email,
                                settings)
        if changes.new_run is not None:
            row = {**changes.new_run, "context": json.dumps(changes.new_run["context"])}
            self.pending.append((INSERT_RUN, (student.id, *(row[column] for column in NEW_RUN_COLUMNS))))
        if reply is not None:
            self.reply(student, reply)

    def _update_run(self, run: RunRow, changes: RunChanges) -> None:
        assert set(changes.run) <= RUN_COLUMNS, f"unexpected run columns {set(changes.run) - RUN_COLUMNS}"
        columns = sorted(changes.run)
        self.pending.append((f"UPDATE lesson_runs SET {', '.join(f'{column} = %s' for column in columns)} WHERE id = %s",
                             (*(changes.run[column] for column in columns), run.id)))
        self.pending += [(INSERT_RESULT, (row["run_id"], row["step_id"], row["points"], row["passed_at"], row["source"]))
                         for row in changes.results]
        self.pending += [(INSERT_EVENT, (row["run_id"], row["step_id"], row["kind"], row["detail"], row["at"]))
                         for row in changes.events]

    def reply(self, student: StudentRef, content: str) -> None:
        payload: dict[str, Any] = {"to": student.email, "content": content}
        if student.zulip_user_id is not None:
            payload["to_user_id"] = student.zulip_user_id
        self.pending.append((INSERT_REPLY, (student.id, json.dumps(payload))))
        REPLIES_QUEUED.inc()  # counted when written: a transaction rolled back later still counts

    def savepoint(self) -> None:
        self.pending.append(("SAVEPOINT message", None))

    def release_savepoint(self) -> None:
        self._orm_flush()
        self._send("RELEASE SAVEPOINT message")

    def rollback_to_savepoint(self) -> None:
        self.pending = []
        self.cursor.execute("ROLLBACK TO SAVEPOINT message")
        self.session.rollback()  # forget what the ORM wrote in the savepoint (sends nothing: autocommit)

    def commit(self) -> None:
        self._orm_flush()
        self._send("COMMIT")
        self.open = False

    def rollback(self) -> None:
        self.pending = []
        self.open = False
        self.cursor.execute("ROLLBACK")

    def _orm_flush(self) -> None:
        """Whatever the ORM holds (an admin's command, a grade) goes out before the savepoint or transaction ends."""
        if self.session.new or self.session.dirty or self.session.deleted:
            self.session.flush()

    def close(self) -> None:
        """Leave no transaction open on the connection, and give the caller its session back."""
        if self.open:
            try:
                self.rollback()
            except Exception:  # the connection broke: it must not go back to the pool mid-transaction
                self.connection.invalidate()
        if self.session.in_transaction() or self.session.new:  # what the ORM did in the message (closing an
            self.session.close()  # unused session still walks its bookkeeping: a twentieth of the message's CPU)
        if self.callers_session is None:
            db.session.registry.clear()
        else:
            db.session.registry.set(self.callers_session)
        if self.held:
            _held.in_use, _held.idle_since = False, time.monotonic()
            if self.connection.invalidated:
                _held.connection = None
                self.connection.close()
            return
        if not self.dbapi.closed:
            self.dbapi.autocommit = False
        self.connection.close()


class SessionStore:
    """The same steps through the ORM session, one statement at a time: for SQLite (the demo's console chat)."""

    def __init__(self) -> None:
        self.runs: dict[int, LessonRun] = {}
        self.nested: Any = None

    def lock_sender(self, sender_email: str, full_name: str, zulip_user_id: int | None, language: str) -> StudentRef:
        return get_or_create_student(sender_email, full_name, zulip_user_id, language)

    def record(self, message_id: str, content: str, student: StudentRef) -> Recorded:
        if not record_inbound(message_id, content, student.id):
            return Recorded(False, None)
        run = latest_run(student.id)
        if run is None:
            return Recorded(True, None)
        self.runs[run.id] = run
        return Recorded(True, RunRow.of(run))

    def persist(self, student: StudentRef, run: RunRow | None, outcome: Outcome, reply: str | None,
                catalog: Catalog, settings: Settings) -> None:
        apply_outcome(student, self.runs.get(run.id) if run else None, outcome, catalog, settings)
        if reply is not None:
            queue_reply(student, reply)

    def reply(self, student: StudentRef, content: str) -> None:
        queue_reply(student, content)

    def savepoint(self) -> None:
        self.nested = db.session.begin_nested()

    def release_savepoint(self) -> None:
        self.nested.commit()

    def rollback_to_savepoint(self) -> None:
        self.nested.rollback()

    def commit(self) -> None:
        db.session.commit()

    def rollback(self) -> None:
        db.session.rollback()

    def close(self) -> None:
        self.runs.clear()
