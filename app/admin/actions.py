"""What an admin can do to a student's run or message from the admin pages, each recorded with who and when.

Every effect goes through the outbox in the same transaction: a restarted or stopped run tells
its student in chat, a regrade queues the grade again. The caller (the view) commits.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from app.admin.models import AdminAction
from app.db import db, utcnow
from app.grading.service import grade_key, queue_grade, retry_failed, sheet_key
from app.i18n import Text
from app.lessons.catalog import Catalog
from app.lessons.engine import step_text
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.outbox.service import queue_reply
from app.runs.models import LessonRun, RunStatus, StepResult
from app.runs.service import schedule_check
from app.settings import Settings


@dataclass(frozen=True)
class Done:
    """What an action did, in one line, and whose page to go back to."""

    student_id: int | None
    detail: str


class ActionNotFound(Exception):
    """The run or item does not exist (any more)."""


class ActionRefused(Exception):
    """The action does not apply in the current state; the message says why."""


def _record(admin_email: str, action: str, student_id: int | None, target: str, detail: str) -> Done:
    db.session.add(AdminAction(admin_email=admin_email, action=action, student_id=student_id, target=target,
                               detail=detail[:500], at=utcnow()))
    return Done(student_id, detail)


def _locked_run(run_id: int) -> LessonRun:
    run = db.session.scalars(sa.select(LessonRun).where(LessonRun.id == run_id).with_for_update()).one_or_none()
    if run is None:
        raise ActionNotFound(f"There is no run {run_id}.")
    return run


def restart_run(run_id: int, admin_email: str, catalog: Catalog, settings: Settings) -> Done:
    """Back to step 1 with no points (its step results go; a grade already queued or sent stays)."""
    run = _locked_run(run_id)
    lesson = catalog.get(run.lesson_id)
    if lesson is None:
        raise ActionRefused(f"Lesson {run.lesson_id} is no longer loaded, so run {run_id} cannot start again.")
    other = db.session.scalar(sa.select(LessonRun.id).where(LessonRun.student_id == run.student_id, LessonRun.id != run.id,
                                                            LessonRun.status == RunStatus.ACTIVE))
    if other is not None:
        raise ActionRefused(f"The student is in run {other} now; stop it first, then restart run {run_id}.")
    was = f"{run.status.value} at step {run.step_index + 1} with {run.points} points"
    db.session.execute(sa.delete(StepResult).where(StepResult.run_id == run.id))
    now = utcnow()
    run.status, run.step_index, run.points, run.finished_at = RunStatus.ACTIVE, 0, 0, None
    run.last_activity_at, run.reminded_at, run.check_failures, run.last_check_error = now, None, 0, None
    schedule_check(run, catalog, settings, now)
    language = run.student.language
    queue_reply(run.student, "\n\n".join(text.render(language) for text in
                                         (Text("admin.restarted", lesson=lesson.id), step_text(lesson, 0))))
    detail = f"run {run.id} ({run.lesson_id}) restarted; it was {was}"
    return _record(admin_email, "restart", run.student_id, f"run {run.id}", detail)


def stop_run(run_id: int, admin_email: str) -> Done:
    """End an active run without a grade, as the student's `stop` does."""
    run = _locked_run(run_id)
    if run.status != RunStatus.ACTIVE:
        raise ActionRefused(f"Run {run_id} is {run.status.value}, not active: there is nothing to stop.")
    run.status, run.finished_at, run.next_check_at = RunStatus.STOPPED, utcnow(), None
    queue_reply(run.student, Text("admin.stopped", lesson=run.lesson_id, points=run.points).render(run.student.language))
    detail = f"run {run.id} ({run.lesson_id}) stopped at step {run.step_index + 1} with {run.points} points"
    return _record(admin_email, "stop", run.student_id, f"run {run.id}", detail)


def _requeue(key: str, points: int) -> bool:
    """Send an existing grade (or sheet row) again with the run's points; False if there is none."""
    item = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.dedupe_key == key).with_for_update()).one_or_none()
    if item is None:
        return False
    payload = {name: value for name, value in item.payload.items() if name != "delivered"}
    item.payload = {**payload, "points": points}
    item.status, item.attempts, item.last_error, item.next_attempt_at = OutboxStatus.PENDING, 0, None, utcnow()
    return True


def regrade_run(run_id: int, admin_email: str, settings: Settings) -> Done:
    """Write a completed run's grade again (its points as they are now), e.g. after a Classroom fix."""
    run = _locked_run(run_id)
    if run.status != RunStatus.COMPLETED:
        raise ActionRefused(f"Run {run_id} is {run.status.value}: only a completed run has a grade.")
    requeued = _requeue(grade_key(run.id), run.points)
    if settings.google_sheet_id:
        requeued = _requeue(sheet_key(run.id), run.points) and requeued
    if not requeued:
        queue_grade(run, settings)
    detail = f"run {run.id} ({run.lesson_id}): grade of {run.points} points queued again"
    return _record(admin_email, "regrade", run.student_id, f"run {run.id}", detail)


def resend_reply(item_id: int, admin_email: str) -> Done:
    """Put a failed chat reply back in the queue with its attempts reset."""
    item = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.id == item_id).with_for_update()).one_or_none()
    if item is None or item.kind != OutboxKind.CHAT_REPLY:
        raise ActionNotFound(f"There is no chat reply {item_id}.")
    if item.status != OutboxStatus.FAILED:
        raise ActionRefused(f"Reply {item_id} is {item.status.value}, not failed: it needs no resending.")
    reason = item.last_error or "no reason recorded"
    item.status, item.attempts, item.next_attempt_at = OutboxStatus.PENDING, 0, utcnow()
    detail = f"reply {item.id} queued again (it had failed: {reason})"
    return _record(admin_email, "resend", item.student_id, f"outbox {item.id}", detail)


def retry_failed_grades(admin_email: str) -> Done:
    """Every failed grade and gradebook row back in the queue (after the admin fixed the reason)."""
    count = retry_failed()
    detail = f"{count} failed grade(s) and row(s) queued again"
    return _record(admin_email, "retry grades", None, "grades", detail)
