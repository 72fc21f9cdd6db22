"""What an admin can do to a student's run or message from the admin pages, each recorded with who and when.

Every effect goes through the outbox in the same transaction: a restarted or stopped run tells
its student in chat, a regrade queues the grade again. The caller (the view) commits.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from app.admin.models import AdminAction
from app.db import db, utcnow
from app.grading.service import GradeError, regrade, retry_failed
from app.lessons.catalog import Catalog
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs import service
from app.runs.service import RunError
from app.runs.workspace import PlatformWorkspace
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


def _refused(run_id: int, error: RunError | GradeError) -> ActionNotFound | ActionRefused:
    """A 404 when the run is not there; otherwise a 409 with the service's own sentence."""
    message = str(error)
    return ActionNotFound(f"There is no run {run_id}.") if message.startswith("no run") else ActionRefused(message)


def restart_run(run_id: int, admin_email: str, catalog: Catalog, settings: Settings) -> Done:
    """The run's lesson again from step 1 for its student, as ``manage.py runs restart`` does (runs/service.py)."""
    try:
        new_run = service.restart_run(run_id, admin_email, catalog, PlatformWorkspace(settings), settings)
    except RunError as error:
        raise _refused(run_id, error) from None
    detail = f"run {run_id} ({new_run.lesson_id}) restarted as run {new_run.id}"
    return _record(admin_email, "restart", new_run.student_id, f"run {run_id}", detail)


def stop_run(run_id: int, admin_email: str, catalog: Catalog, settings: Settings) -> Done:
    """End an active run as stopped, as ``manage.py runs stop`` does; the student is told."""
    try:
        run = service.stop_run(run_id, admin_email, catalog, settings)
    except RunError as error:
        raise _refused(run_id, error) from None
    detail = f"run {run.id} ({run.lesson_id}) stopped at step {run.step_index + 1} with {run.points} points"
    return _record(admin_email, "stop", run.student_id, f"run {run.id}", detail)


def regrade_run(run_id: int, admin_email: str) -> Done:
    """Send a completed run's grade again through the outbox, as ``manage.py grades regrade`` does."""
    try:
        done = regrade(run_id, admin_email)
    except GradeError as error:
        raise _refused(run_id, error) from None
    how = "a new grade item" if done.new else "its waiting grade queued again"
    detail = f"run {run_id}: grade of {done.item.payload.get('points')} points, {how}"
    return _record(admin_email, "regrade", done.item.student_id, f"run {run_id}", detail)


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
