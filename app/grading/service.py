"""Queueing grades and sheet rows in the transaction that completes a run, and again when an admin asks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings

log = logging.getLogger(__name__)
GRADE_KINDS = (OutboxKind.GRADE, OutboxKind.SHEET_ROW)


def grade_key(run_id: int) -> str:
    return f"grade:run:{run_id}"


def sheet_key(run_id: int) -> str:
    return f"sheet:run:{run_id}"


def _queue(kind: OutboxKind, key: str, student_id: int, payload: dict[str, Any]) -> None:
    """Insert, or let a newer value replace a pending one with the same key."""
    item = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.dedupe_key == key).with_for_update()).first()
    if item is None:
        db.session.add(OutboxItem(kind=kind, student_id=student_id, payload=payload, dedupe_key=key,
                                  status=OutboxStatus.PENDING, attempts=0, next_attempt_at=utcnow()))
    elif item.status == OutboxStatus.PENDING:
        item.payload = {**item.payload, **payload}
        item.next_attempt_at = utcnow()


def queue_grade(run: LessonRun, settings: Settings) -> None:
    """Queue the run's grade for Classroom (and a gradebook row when a live sheet is set); caller commits."""
    queue_run_grade(run.id, run.lesson_id, run.points, run.student_id, run.student.email, settings)


def queue_run_grade(run_id: int, lesson_id: str, points: int, student_id: int, student_email: str,
                    settings: Settings) -> None:
    """:func:`queue_grade` from the run's columns, for the message path that holds no ORM run."""
    payload = {"run_id": run_id, "lesson_id": lesson_id, "points": points, "student_email": student_email}
    _queue(OutboxKind.GRADE, grade_key(run_id), student_id, payload)
    if settings.google_sheet_id:
        _queue(OutboxKind.SHEET_ROW, sheet_key(run_id), student_id, {**payload, "sheet_id": settings.google_sheet_id})


def wake_grades(student_id: int | None = None, kinds: tuple[OutboxKind, ...] = (OutboxKind.GRADE,)) -> int:
    """Make waiting grades due now (after a link, a roster sync or a new authorization: `google auth`
    wakes sheet rows too), so they go out at the next poll instead of when their wait ends."""
    statement = (sa.update(OutboxItem).where(OutboxItem.kind.in_(kinds), OutboxItem.status == OutboxStatus.PENDING)
                 .values(next_attempt_at=utcnow()))
    if student_id is not None:
        statement = statement.where(OutboxItem.student_id == student_id)
    return int(db.session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def retry_failed() -> int:
    """Put failed grades and rows back in the queue (after the admin fixed the reason)."""
    statement = (sa.update(OutboxItem).where(OutboxItem.kind.in_(GRADE_KINDS), OutboxItem.status == OutboxStatus.FAILED)
                 .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=utcnow()))
    return int(db.session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def list_grades(status: OutboxStatus | None = None, limit: int = 200) -> list[OutboxItem]:
    query = sa.select(OutboxItem).where(OutboxItem.kind.in_(GRADE_KINDS)).order_by(OutboxItem.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OutboxItem.status == status)
    return list(db.session.scalars(query))


class GradeError(Exception):
    """A grade cannot be sent again; the message says why."""


def grade_items(run_id: int) -> list[OutboxItem]:
    """The run's grade items, oldest first: the one queued on completion, then one per regrade."""
    key = grade_key(run_id)
    query = sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GRADE,
                                        sa.or_(OutboxItem.dedupe_key == key, OutboxItem.dedupe_key.startswith(f"{key}:")))
    return list(db.session.scalars(query.order_by(OutboxItem.id)))


def grades_of(student_id: int) -> list[OutboxItem]:
    query = sa.select(OutboxItem).where(OutboxItem.kind.in_(GRADE_KINDS), OutboxItem.student_id == student_id)
    return list(db.session.scalars(query.order_by(OutboxItem.id)))


@dataclass(frozen=True)
class Regrade:
    item: OutboxItem
    new: bool  # False: the run's grade was still waiting (or had failed) and that item goes out again


def regrade(run_id: int, by: str) -> Regrade:
    """Send a completed run's grade to Classroom again, through the outbox (the caller commits).

    A delivered grade gets a new grade item (the old one stays as history; delivery reads the
    submission first, so an unchanged grade is not written twice). A grade still waiting or
    failed is not doubled: that item is queued again now with the run's points.
    """
    run = db.session.get(LessonRun, run_id, with_for_update=True)
    if run is None:
        raise GradeError(f"no run {run_id}; see ./manage.py runs list")
    if run.status != RunStatus.COMPLETED:
        raise GradeError(f"run {run_id} is {run.status.value}: only a completed run has a grade")
    payload = {"run_id": run.id, "lesson_id": run.lesson_id, "points": run.points, "student_email": run.student.email,
               "requested_by": by}
    items = grade_items(run.id)
    unsent = next((item for item in reversed(items) if item.status != OutboxStatus.SENT), None)
    if unsent is not None:
        unsent.payload = {**unsent.payload, **payload}
        unsent.status, unsent.attempts, unsent.next_attempt_at = OutboxStatus.PENDING, 0, utcnow()
    else:
        unsent = OutboxItem(kind=OutboxKind.GRADE, student_id=run.student_id, payload=payload, status=OutboxStatus.PENDING,
                            dedupe_key=f"{grade_key(run.id)}:regrade:{len(items)}", attempts=0, next_attempt_at=utcnow())
        db.session.add(unsent)
    db.session.flush()
    log.info("admin %s regraded run %s (%s points): outbox item %s", by, run.id, run.points, unsent.id)
    return Regrade(unsent, new=unsent.id not in {item.id for item in items})
