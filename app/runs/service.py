"""Persisting runs: loading a student's chat state and applying what the dialog or engine decided."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from app.chat.dialog import ChatState, Outcome
from app.db import db, utcnow
from app.grading.service import queue_grade
from app.lessons.catalog import Catalog
from app.lessons.engine import PassedStep, Progress, RunState, current_step
from app.runs.models import LessonRun, RunStatus, StepEvent, StepEventKind, StepResult
from app.settings import Settings
from app.students.service import StudentRef, set_language


def active_run(student_id: int, *, lock: bool = False) -> LessonRun | None:
    query = sa.select(LessonRun).where(LessonRun.student_id == student_id, LessonRun.status == RunStatus.ACTIVE)
    if lock:
        query = query.with_for_update()
    return db.session.scalars(query).one_or_none()


def run_state(run: LessonRun) -> RunState:
    return RunState(run.lesson_id, run.step_index, run.points, dict(run.context or {}), run.id)


_LATEST_RUN = (sa.select(LessonRun).where(LessonRun.student_id == sa.bindparam("student_id"))
               .order_by(LessonRun.id.desc()).limit(1).with_for_update())


def load_chat_state(student: StudentRef) -> tuple[ChatState, LessonRun | None]:
    """The student's chat state and their active run (locked), in one query.

    A new run is only created after the previous one ended, so the newest run is the
    active one if there is any.
    """
    latest = db.session.scalars(_LATEST_RUN, {"student_id": student.id}).one_or_none()
    run = latest if latest is not None and latest.status == RunStatus.ACTIVE else None
    state = ChatState(student.language, run_state(run) if run else None, latest.lesson_id if latest else None, student.email)
    return state, run


def schedule_check(run: LessonRun, catalog: Catalog, settings: Settings, now: datetime) -> None:
    """Plan the poller's next look: soon after activity, then backing off; never for questions."""
    lesson = catalog.get(run.lesson_id)
    if run.status != RunStatus.ACTIVE or lesson is None or current_step(lesson, run_state(run)).check.needs_answer:
        run.next_check_at = None
        return
    delay = min(settings.check_interval_seconds * (2 ** min(run.check_failures, 16)), settings.check_interval_max_seconds)
    run.next_check_at = now + timedelta(seconds=delay)


def _record_passed(run: LessonRun, passed: list[PassedStep], source: str, now: datetime) -> None:
    for step in passed:
        db.session.add(StepResult(run_id=run.id, step_id=step.step_id, points=step.points, passed_at=now, source=source))


def _finish(run: LessonRun, status: RunStatus, now: datetime, settings: Settings) -> None:
    run.status = status
    run.finished_at = now
    run.next_check_at = None
    if status == RunStatus.COMPLETED:
        queue_grade(run, settings)  # in this transaction: the grade is never lost nor doubled


def apply_progress(run: LessonRun, progress: Progress, source: str, catalog: Catalog, settings: Settings) -> None:
    """Write an evaluation's result onto the run (hook, poller and chat alike)."""
    now = utcnow()
    run.step_index = progress.run.step_index
    run.points = progress.run.points
    _record_passed(run, progress.passed, source, now)
    if progress.passed:
        run.check_failures = 0
        run.reminded_at = None
    if progress.completed:
        _finish(run, RunStatus.COMPLETED, now, settings)
    else:
        schedule_check(run, catalog, settings, now)


def apply_outcome(student: StudentRef, run: LessonRun | None, outcome: Outcome, catalog: Catalog,
                  settings: Settings) -> None:
    """Persist a dialog outcome for the student (whose row and active run the caller has locked)."""
    now = utcnow()
    if student.language != outcome.state.language:
        set_language(student.id, outcome.state.language)
    if run is not None:
        run.last_activity_at = now
        run.reminded_at = None
        if outcome.passed:
            run.check_failures = 0
        _record_passed(run, outcome.passed, "chat", now)
        for note in outcome.notes:
            db.session.add(StepEvent(run_id=run.id, step_id=note.step_id, kind=StepEventKind(note.kind), detail=note.detail,
                                     at=now))
        if outcome.progressed is not None:
            run.step_index = outcome.progressed.step_index
            run.points = outcome.progressed.points
        if outcome.ended is not None:
            _finish(run, RunStatus(outcome.ended.status), now, settings)
        else:
            schedule_check(run, catalog, settings, now)
        db.session.flush()
    if outcome.started is not None:
        started = outcome.started
        new_run = LessonRun(student_id=student.id, lesson_id=started.lesson_id, context=started.context,
                            repo_name=started.context.get("repo_name"), started_at=now, last_activity_at=now,
                            step_index=0, points=0, check_failures=0, status=RunStatus.ACTIVE)
        db.session.add(new_run)
        schedule_check(new_run, catalog, settings, now)

