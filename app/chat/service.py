"""Receiving one chat message: dedupe, run the dialog, persist, queue the replies — one transaction (app/chat/store.py
holds its SQL)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.admin.chat import admin_request
from app.admin.chat import answer as admin_answer
from app.chat import dialog
from app.chat.store import MessageStore, message_store
from app.i18n import render_all
from app.lessons.catalog import Catalog
from app.metrics.registry import MESSAGES_DUPLICATE, MESSAGES_RECEIVED
from app.runs.service import chat_state
from app.runs.workspace import PlatformWorkspace
from app.settings import Settings
from app.students.service import StudentRef

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


def _lock_sender(store: MessageStore, message: InboundChat, settings: Settings) -> StudentRef:
    return store.lock_sender(message.sender_email, message.sender_full_name, message.sender_id,
                             settings.default_language)


def _handle(store: MessageStore, message: InboundChat, student: StudentRef, catalog: Catalog,
            settings: Settings) -> tuple[bool, int, str]:
    """The message's whole effect, written to the store uncommitted: the dialog's outcome persisted and its
    reply queued (an admin's command answered instead). Whether it was new, the replies queued, and the
    student's language after it."""
    recorded = store.record(message.message_id, message.content, student)
    if not recorded.new:
        return False, 0, student.language
    admin_command = admin_request(message.content, message.sender_id, settings.zulip_bot_name)
    if admin_command is not None:
        store.reply(student, admin_answer(admin_command, student, catalog).render(student.language))
        return True, 1, student.language
    state, run = chat_state(student, recorded.latest_run)
    outcome = dialog.handle(message.content, state, catalog, PlatformWorkspace(settings), bot_name=settings.zulip_bot_name)
    replies = render_all(outcome.texts, outcome.state.language)
    store.persist(student, run, outcome, "\n\n".join(replies) if replies else None, catalog, settings)
    return True, (1 if replies else 0), outcome.state.language


def receive_message(message: InboundChat, catalog: Catalog, settings: Settings) -> Received:
    """Handle a message exactly once: a repeated message id has no second effect."""
    with message_store() as store:
        student = _lock_sender(store, message, settings)
        new, replies, _ = _handle(store, message, student, catalog, settings)
        if not new:
            store.rollback()
            MESSAGES_DUPLICATE.inc()
            log.info("duplicate message %s ignored", message.message_id)
            return Received(duplicate=True)
        store.commit()
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


def _lock_senders(store: MessageStore, messages: list[InboundChat], settings: Settings) -> dict[SenderKey, StudentRef]:
    """Every sender's row, created if new and locked, in one fixed order (by Zulip id, then email), so
    that two batches naming the same students never wait for each other in a cycle."""
    senders = {_sender(message): message for message in messages}
    return {key: _lock_sender(store, message, settings) for key, message in sorted(senders.items(), key=lambda item: item[0])}


def receive_batch(messages: list[InboundChat], catalog: Catalog, settings: Settings) -> list[BatchResult]:
    """Handle a batch in one transaction, each message exactly once and in order per sender.

    Each message runs in a savepoint: one that breaks is rolled back alone and reported
    ``failed``, and its sender's later messages in the batch are left ``deferred`` (untouched),
    so the receiver can hand them over again one by one, in order; everyone else's commit.
    """
    with message_store() as store:
        students = _lock_senders(store, messages, settings)
        broken: set[SenderKey] = set()
        results = []
        for message in messages:
            key = _sender(message)
            if key in broken:
                results.append(BatchResult(message.message_id, "deferred"))
                continue
            store.savepoint()
            try:
                new, replies, language = _handle(store, message, students[key], catalog, settings)
                store.release_savepoint()
            except Exception as error:
                store.rollback_to_savepoint()
                log.exception("message %s failed in its batch; its sender's later messages wait", message.message_id)
                broken.add(key)
                results.append(BatchResult(message.message_id, "failed",
                                           reason=f"{error.__class__.__name__}: {error}"[:300]))
                continue
            if not new:
                MESSAGES_DUPLICATE.inc()
                results.append(BatchResult(message.message_id, "duplicate"))
                continue
            students[key] = replace(students[key], language=language)
            results.append(BatchResult(message.message_id, "accepted", replies=replies))
        store.commit()
    MESSAGES_RECEIVED.inc(sum(result.status == "accepted" for result in results))
    return results
