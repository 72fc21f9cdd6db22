"""Receiving one chat message: dedupe, run the dialog, persist, queue the replies — one transaction."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import Row

from app.admin.chat import admin_request
from app.admin.chat import answer as admin_answer
from app.chat import dialog
from app.chat.models import InboundMessage
from app.db import db, upsert_insert
from app.i18n import render_all
from app.lessons.catalog import Catalog
from app.metrics.registry import MESSAGES_DUPLICATE, MESSAGES_RECEIVED
from app.outbox.service import queue_reply
from app.runs.service import apply_outcome, load_chat_state
from app.runs.workspace import PlatformWorkspace
from app.settings import Settings
from app.students.models import Student
from app.students.service import StudentRef, get_or_create_student

log = logging.getLogger(__name__)
MAX_CONTENT_CHARS = 20_000
MAX_EMAIL_CHARS = 254           # students.email; RFC 5321's limit for a whole address
INT64_MAX = 2**63 - 1           # students.zulip_user_id is a BIGINT


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no chat system sends one: refuse it rather than guess.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


def normalize_email(value: str) -> str:
    """The address as students are stored: trimmed, lower case, at most 254 characters *after* lower-casing.

    Lower-casing can lengthen text ("İ" becomes two characters), so the limit is checked last.
    """
    email = _no_nul(value).strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise ValueError(f"{value[:60]!r} is not an email address (name@domain)")
    if len(email) > MAX_EMAIL_CHARS:
        raise ValueError(f"is {len(email)} characters long in lower case; at most {MAX_EMAIL_CHARS} are allowed")
    return email


NoNulText = Annotated[str, AfterValidator(_no_nul)]


class InboundChat(BaseModel):
    """One message from a student, as the receiver (or the console) hands it over.

    Strict where a lenient parse would merge two people or store what the database
    cannot hold: ``sender_id`` must be a JSON integer (``true`` is not user 1) within
    BIGINT, and no text may carry NUL.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)
    message_id: NoNulText = Field(min_length=1, max_length=100, description="The chat system's id, e.g. zulip:123.")
    sender_email: Annotated[str, AfterValidator(normalize_email)] = Field(min_length=3, max_length=1000)
    sender_full_name: NoNulText = Field(default="", max_length=200)
    sender_id: int | None = Field(default=None, strict=True, ge=1, le=INT64_MAX, description="Zulip's user id.")
    content: NoNulText = Field(max_length=MAX_CONTENT_CHARS)

    @field_validator("message_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass(frozen=True)
class Received:
    duplicate: bool
    replies: int = 0


@lru_cache(maxsize=2)
def _record_statement(dialect: str) -> sa.Insert:
    table = InboundMessage.__table__
    sender = sa.select(Student.id).where(Student.email == sa.bindparam("email")).scalar_subquery()
    return (upsert_insert(table, dialect)
            .values(message_id=sa.bindparam("message_id"), content=sa.bindparam("content"), received_at=sa.func.now(),
                    student_id=sender)
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(table.c.id, table.c.student_id))


def _record_inbound(message: InboundChat) -> Row[Any] | None:
    """Store the message with its sender (if known yet); None if it was stored before (a concurrent repeat
    waits, then sees it)."""
    params = {"message_id": message.message_id, "content": message.content, "email": message.sender_email}
    return db.session.execute(_record_statement(db.engine.dialect.name), params).first()


def _attribute_first_message(recorded: Row[Any], student_id: int) -> None:
    """A new student's first message (or the first after their chat email changed) is stored before the
    sender is known by that email: give it to them, so the admin pages show their whole conversation."""
    if recorded.student_id != student_id:
        db.session.execute(sa.update(InboundMessage).where(InboundMessage.id == recorded.id).values(student_id=student_id))


def _handle(message: InboundChat, student: StudentRef, catalog: Catalog, settings: Settings) -> tuple[int, str]:
    """The message's whole effect, uncommitted: the dialog's outcome persisted and its reply queued
    (an admin's command answered instead). The replies queued, and the student's language after it."""
    admin_command = admin_request(message.content, message.sender_id, settings.zulip_bot_name)
    if admin_command is not None:
        queue_reply(student, admin_answer(admin_command, student, catalog).render(student.language))
        return 1, student.language
    state, run = load_chat_state(student)
    outcome = dialog.handle(message.content, state, catalog, PlatformWorkspace(settings), bot_name=settings.zulip_bot_name)
    apply_outcome(student, run, outcome, catalog, settings)
    replies = render_all(outcome.texts, outcome.state.language)
    if replies:
        queue_reply(student, "\n\n".join(replies))
    return (1 if replies else 0), outcome.state.language


def receive_message(message: InboundChat, catalog: Catalog, settings: Settings) -> Received:
    """Handle a message exactly once: a repeated message id has no second effect."""
    recorded = _record_inbound(message)
    if recorded is None:
        db.session.rollback()
        MESSAGES_DUPLICATE.inc()
        log.info("duplicate message %s ignored", message.message_id)
        return Received(duplicate=True)
    student = get_or_create_student(message.sender_email, message.sender_full_name, message.sender_id,
                                    settings.default_language)
    _attribute_first_message(recorded, student.id)
    replies, _ = _handle(message, student, catalog, settings)
    db.session.commit()
    MESSAGES_RECEIVED.inc()
    return Received(duplicate=False, replies=replies)


# --- a batch: what one long-poll brought, in one transaction ------------------------------------

MAX_BATCH = 50
SenderKey = tuple[int, str]


class InboundBatch(BaseModel):
    """The messages of one long-poll, oldest first (at most MAX_BATCH)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[InboundChat] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True)
class BatchResult:
    message_id: str
    status: str  # accepted | duplicate | failed (this message broke) | deferred (an earlier one of its sender broke)
    replies: int = 0
    reason: str | None = None


def _sender(message: InboundChat) -> SenderKey:
    return (message.sender_id or 0, message.sender_email)


def _lock_senders(messages: list[InboundChat], settings: Settings) -> dict[SenderKey, StudentRef]:
    """Every sender's row, created if new and locked, in one fixed order (by Zulip id, then email), so
    that two batches naming the same students never wait for each other in a cycle."""
    senders = {_sender(message): message for message in messages}
    return {key: get_or_create_student(message.sender_email, message.sender_full_name, message.sender_id,
                                       settings.default_language)
            for key, message in sorted(senders.items(), key=lambda item: item[0])}


def receive_batch(messages: list[InboundChat], catalog: Catalog, settings: Settings) -> list[BatchResult]:
    """Handle a batch in one transaction, each message exactly once and in order per sender.

    Each message runs in a savepoint: one that breaks is rolled back alone and reported
    ``failed``, and its sender's later messages in the batch are left ``deferred`` (untouched),
    so the receiver can hand them over again one by one, in order; everyone else's commit.
    """
    students = _lock_senders(messages, settings)
    broken: set[SenderKey] = set()
    results = []
    for message in messages:
        key = _sender(message)
        if key in broken:
            results.append(BatchResult(message.message_id, "deferred"))
            continue
        savepoint = db.session.begin_nested()
        try:
            recorded = _record_inbound(message)
            if recorded is None:
                savepoint.commit()
                MESSAGES_DUPLICATE.inc()
                results.append(BatchResult(message.message_id, "duplicate"))
                continue
            _attribute_first_message(recorded, students[key].id)
            replies, language = _handle(message, students[key], catalog, settings)
            savepoint.commit()
        except Exception as error:
            savepoint.rollback()
            log.exception("message %s failed in its batch; its sender's later messages wait", message.message_id)
            broken.add(key)
            results.append(BatchResult(message.message_id, "failed", reason=f"{error.__class__.__name__}: {error}"[:300]))
            continue
        students[key] = replace(students[key], language=language)
        results.append(BatchResult(message.message_id, "accepted", replies=replies))
    db.session.commit()
    MESSAGES_RECEIVED.inc(sum(result.status == "accepted" for result in results))
    return results
