"""Persisting runs: loading a student's chat state and applying what the dialog or engine decided;
what admins see of runs and do to them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from app.courses.models import Course
from app.db import db, utcnow
from app.grading.service import queue_grade
from app.i18n import render_all
from app.lessons import conversation
from app.lessons.catalog import Catalog
from app.lessons.conversation import ChatState, Outcome
from app.lessons.engine import PassedStep, Progress, RunState, current_step
from app.lessons.platforms import Workspace
from app.loop import backoff
from app.outbox.service import queue_reply
from app.runs.models import LessonRun, RunStatus, StepEvent, StepEventKind, StepResult
from app.settings import Settings
from app.students.models import Student
from app.students.service import StudentRef, in_course, set_language

log = logging.getLogger(__name__)


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
    delay = backoff(run.check_failures + 1, initial=settings.check_interval_seconds,
                    maximum=settings.check_interval_max_seconds, jitter=0.0)
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
                  settings: Settings) -> LessonRun | None:
    """Persist a dialog outcome for the student (whose row and active run the caller has locked); the new run, if any."""
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
        db.session.flush()
        return new_run
    return None


# --- what admins see and do ------------------------------------------------------------------


class RunError(Exception):
    """An admin action on a run cannot be done; the message says why and what to do instead."""


def list_runs(course: Course | None = None, lesson_id: str | None = None, status: RunStatus | None = None,
              limit: int = 100) -> list[LessonRun]:
    """Runs newest first, with their students, optionally of one course's students, one lesson, one status."""
    query = sa.select(LessonRun).options(joinedload(LessonRun.student)).order_by(LessonRun.id.desc()).limit(limit)
    if course is not None:
        query = query.where(LessonRun.student_id.in_(in_course(course)))
    if lesson_id:
        query = query.where(LessonRun.lesson_id == lesson_id)
    if status is not None:
        query = query.where(LessonRun.status == status)
    return list(db.session.scalars(query))


def runs_of(student: Student) -> list[LessonRun]:
    return list(db.session.scalars(sa.select(LessonRun).where(LessonRun.student_id == student.id).order_by(LessonRun.id)))


def step_label(run: LessonRun, catalog: Catalog) -> str:
    """Where the run is (or ended): ``3/7 feature-branch``; ``7/7`` once completed."""
    lesson = catalog.get(run.lesson_id)
    if lesson is None:
        return f"{run.step_index + 1}/?"
    total = len(lesson.steps)
    if run.status == RunStatus.COMPLETED or run.step_index >= total:
        return f"{total}/{total}"
    return f"{run.step_index + 1}/{total} {lesson.steps[run.step_index].id}"


def stop_run(run_id: int, by: str, catalog: Catalog, settings: Settings) -> LessonRun:
    """End an active run as stopped, and tell the student in chat (the caller commits)."""
    run, student = _lock_for_admin(run_id)
    if run.status != RunStatus.ACTIVE:
        raise RunError(f"run {run.id} already ended: {_ended(run)}; nothing to stop")
    state = ChatState(student.language, run_state(run), run.lesson_id, student.email)
    _apply_admin_outcome(run.id, student, run, conversation.stopped_by_admin(state), by, "stopped", catalog, settings)
    return run


def restart_run(run_id: int, by: str, catalog: Catalog, workspace: Workspace, settings: Settings) -> LessonRun:
    """Start the run's lesson again from step 1 for its student, as their `restart` would; the new run.

    The old run is kept as history: an active one ends as stopped (with its points and its
    repository), a finished one stays as it was (a completed run keeps its grade). The
    student is told in chat, with the new run's first step. The caller commits.
    """
    run, student = _lock_for_admin(run_id)
    lesson = catalog.get(run.lesson_id)
    if lesson is None:
        raise RunError(f"lesson {run.lesson_id} of run {run.id} is not served any more (see ./manage.py lessons list)")
    active = run if run.status == RunStatus.ACTIVE else active_run(student.id, lock=True)
    if active is not None and active.id != run.id:
        raise RunError(f"{student.email} is in another run now (run {active.id}, lesson {active.lesson_id}): "
                       f"stop it first with ./manage.py runs stop {active.id}, or restart that one")
    state = ChatState(student.language, run_state(active) if active else None, run.lesson_id, student.email)
    outcome = conversation.restarted_by_admin(lesson, state, workspace)
    new_run = _apply_admin_outcome(run.id, student, active, outcome, by, "restarted", catalog, settings)
    assert new_run is not None
    return new_run


def _lock_for_admin(run_id: int) -> tuple[LessonRun, StudentRef]:
    """The run and its student, locked in the order a chat message locks them (the student, then the run),
    so that an admin's action and the student's own message happen one after the other."""
    run = db.session.get(LessonRun, run_id)
    if run is None:
        raise RunError(f"no run {run_id}; see ./manage.py runs list")
    student = db.session.scalars(sa.select(Student).where(Student.id == run.student_id).with_for_update()).one()
    db.session.refresh(run, with_for_update=True)
    return run, StudentRef(student.id, student.email, student.language, student.zulip_user_id)


def _apply_admin_outcome(run_id: int, student: StudentRef, active: LessonRun | None, outcome: Outcome, by: str,
                         action: str, catalog: Catalog, settings: Settings) -> LessonRun | None:
    """Persist the outcome and queue its texts to the student, as a chat message's would be; log who did it."""
    if active is not None:  # who ended it stays with the run: an admin, not the student or a timeout
        active.context = {**(active.context or {}), "ended_by": {"admin": by, "action": action, "at": utcnow().isoformat()}}
    new_run = apply_outcome(student, active, outcome, catalog, settings)
    queue_reply(student, "\n\n".join(render_all(outcome.texts, student.language)))
    log.info("admin %s %s run %s of %s%s", by, action, run_id, student.email, f"; new run {new_run.id}" if new_run else "")
    return new_run


def _ended(run: LessonRun) -> str:
    when = run.finished_at.strftime("%Y-%m-%d %H:%M UTC") if run.finished_at else "at an unknown time"
    return f"{run.status.value} {when}"
