"""Admin commands in chat: an allowlisted admin runs the same service functions as manage.py from Zulip.

    admin help                 what follows
    admin status               the report of `manage.py status`
    admin grades sync          every waiting (and failed) grade tried now
    admin logs ship            the log shipper's pass, now
    admin backup               `manage.py backup create`
    admin student EMAIL        a student's runs and grades

Only a Zulip account on the allowlist (``manage.py admins add EMAIL --zulip-user-id N``) is
answered; anyone else gets the dialog's ordinary reply, so the commands' existence is never
revealed. Quick commands answer at once; long ones answer "started", run in the outbox
dispatcher as an ``admin_job`` item (:class:`AdminJobs`), and report when done. Every command is recorded (who, when,
what, and what came of it) in ``admin_actions``, where the admin pages show it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from app.admin.models import AdminAction
from app.backup.service import BackupError, create_backup
from app.chat.dialog import strip_mention
from app.db import db, utcnow
from app.google.signin import chat_admin
from app.grading import delivery
from app.grading.service import grades_of, retry_failed
from app.i18n import Text
from app.lessons.catalog import Catalog
from app.lessons.commands import normalize_word
from app.logship.drive import ShipError
from app.logship.shipper import LogShipper
from app.logship.shipper import NotConfigured as LogsNotConfigured
from app.outbox.dispatcher import Outcome
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.outbox.service import queue_reply
from app.runs.service import runs_of, step_label
from app.settings import Settings
from app.status.service import Level, system_status
from app.students.models import Student
from app.students.service import StudentRef

log = logging.getLogger(__name__)
ADMIN_WORDS = {"admin", "админ"}
QUICK = ("help", "student")
JOBS = ("status", "grades sync", "logs ship", "backup")
JOB_ATTEMPTS = 3
JOB_RETRY_AFTER = timedelta(minutes=1)
MARKS = {Level.OK: "✅", Level.OFF: "➖", Level.WARN: "⚠️", Level.FAIL: "❌"}


@dataclass(frozen=True)
class AdminRequest:
    admin_email: str
    command: str  # one of QUICK or JOBS; "" when the words after `admin` are none of them
    argument: str


def admin_request(text: str, zulip_user_id: int | None, bot_name: str) -> AdminRequest | None:
    """The admin command in this message from an allowlisted admin's Zulip account; None for anything
    else (the dialog answers it as from anyone, so a student learns nothing of admin commands)."""
    words = strip_mention(text, bot_name).split()
    if not words or normalize_word(words[0]) not in ADMIN_WORDS:
        return None
    admin = chat_admin(zulip_user_id)
    if admin is None:
        return None
    rest = [normalize_word(word) for word in words[1:]]
    command = next((c for c in (*JOBS, *QUICK) if rest[:len(c.split())] == c.split()), "")
    argument = " ".join(words[1 + len(command.split()):]) if command else ""
    return AdminRequest(admin.email, command or ("unknown" if rest else "help"), argument)


def answer(request: AdminRequest, sender: StudentRef, catalog: Catalog) -> Text:
    """Answer at once, or queue the job and say it started; the command is recorded either way (the caller commits)."""
    action = AdminAction(admin_email=request.admin_email, action=f"chat: {request.command}"[:32], student_id=None,
                         target="chat", detail="started" if request.command in JOBS else "answered", at=utcnow())
    db.session.add(action)
    db.session.flush()
    if request.command in JOBS:
        db.session.add(OutboxItem(kind=OutboxKind.ADMIN_JOB, student_id=sender.id, status=OutboxStatus.PENDING,
                                  payload={"command": request.command, "action_id": action.id}, attempts=0,
                                  next_attempt_at=utcnow()))
        log.info("admin %s started `admin %s` from chat", request.admin_email, request.command)
        return Text("admin.started", command=request.command)
    if request.command == "student":
        return Text("admin.result", command=f"student {request.argument[:100]}",
                    result=_code_block_safe(student_summary(request.argument, catalog)))
    if request.command == "unknown":
        return Text("admin.unknown")
    return Text("admin.help")


def student_summary(email: str, catalog: Catalog) -> str:
    """A student's runs (where each is) and grade deliveries, by their chat email."""
    if not email.strip():
        return "which student? `admin student EMAIL`"
    student = db.session.scalars(sa.select(Student).where(Student.email == email.strip().lower())).first()
    if student is None:
        return f"no student {email.strip()[:100]!r} (their chat email)"
    lines = [f"{student.full_name or student.email} <{student.email}>, language {student.language}"]
    lines += [f"- run {run.id}: {run.lesson_id} {step_label(run, catalog)}, {run.status.value}, {run.points} points"
              for run in runs_of(student)] or ["- no runs yet"]
    lines += [f"- {item.kind.value} {item.payload.get('lesson_id', '')}: {item.status.value}"
              + (f" ({item.last_error})" if item.last_error else "") for item in grades_of(student.id)]
    return "\n".join(lines)


def _code_block_safe(text: str) -> str:
    """Text from outside (a student's name, an error) cannot end the reply's code block."""
    return text.replace("```", "\u2035\u2035\u2035")


# --- the long commands, run by the outbox dispatcher ---------------------------------------------


class AdminJobs:
    """The outbox handler of admin jobs. Unordered: each job is its own queue, held while it runs."""

    name = "admin jobs"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.ADMIN_JOB,)
    ordered = False
    lock_class = 7306  # pg advisory lock namespace: one run of a job at a time

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog

    def deliver(self, item: OutboxItem) -> Outcome:
        """Run the job and tell the admin how it went."""
        _run(item, self.settings, self.catalog)
        return {OutboxStatus.SENT: Outcome.SENT, OutboxStatus.FAILED: Outcome.FAILED}.get(item.status, Outcome.RETRY)


def _run(item: OutboxItem, settings: Settings, catalog: Catalog) -> None:
    """Run one job and tell the admin. A crash midway leaves it pending for the next pass, at most
    JOB_ATTEMPTS times (each job is safe to run again: a backup refuses to run twice at once)."""
    command = str(item.payload.get("command"))
    item.attempts += 1
    item.last_attempt_at = utcnow()
    item.next_attempt_at = utcnow() + JOB_RETRY_AFTER
    db.session.commit()  # the attempt counts even if the process dies in the job
    try:
        result, ok = _JOBS[command](settings, catalog), True
    except Exception as error:  # the admin gets the one line; the log gets the rest
        db.session.rollback()
        log.exception("admin job %s (%s) failed", item.id, command)
        if item.attempts < JOB_ATTEMPTS and not isinstance(error, (BackupError, ShipError, LogsNotConfigured)):
            return
        result, ok = f"{error.__class__.__name__}: {error}"[:500], False
    item.status = OutboxStatus.SENT if ok else OutboxStatus.FAILED
    item.sent_at, item.last_error = (utcnow(), None) if ok else (None, result)
    action = db.session.get(AdminAction, item.payload.get("action_id"))
    if action is not None:
        action.detail = (("done: " if ok else "failed: ") + result.replace("\n", "; "))[:500]
    admin = db.session.get(Student, item.student_id)
    if admin is not None:
        text = Text("admin.result" if ok else "admin.failed", command=command, result=_code_block_safe(result))
        queue_reply(admin, text.render(admin.language))


def _status(settings: Settings, catalog: Catalog) -> str:
    report = system_status(settings)
    lines = [f"{MARKS[check.level]} {check.name}: {check.detail}" + (f" — {check.fix}" if check.fix else "")
             for check in report.checks]
    return "\n".join(["all good" if report.ok else "something needs attention", *lines])


def _grades_sync(settings: Settings, catalog: Catalog) -> str:
    retried = retry_failed()
    db.session.commit()
    report = delivery.sync(settings, catalog, rounds=1, sleep=lambda seconds: None)
    return (f"sent {report.count(Outcome.SENT)}, failed {report.count(Outcome.FAILED)}, still waiting "
            f"{report.count(Outcome.WAITING) + report.count(Outcome.RETRY)} ({retried} failed ones tried again)")


def _logs_ship(settings: Settings, catalog: Catalog) -> str:
    report = LogShipper(settings).run_once()
    if report.errors:
        raise ShipError("; ".join(report.errors))
    return f"shipped {len(report.shipped)} file(s)" + (f": {', '.join(sorted(report.shipped))}" if report.shipped else "")


def _backup(settings: Settings, catalog: Catalog) -> str:
    backup = create_backup(settings, db.engine)
    where = f"on Drive ({backup.drive_id}), verified" if backup.verified else "kept locally only (no Drive folder set)"
    return f"{backup.name}: {backup.size} bytes, {where}"


_JOBS: dict[str, Callable[[Settings, Catalog], str]] = {
    "status": _status, "grades sync": _grades_sync, "logs ship": _logs_ship, "backup": _backup}
