"""Persisting runs: loading a student's chat state and applying what the dialog or engine decided;
what admins see of runs and do to them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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


def latest_run(student_id: int) -> LessonRun | None:
    """The student's newest run, locked: a new run is only created after the previous one ended, so it is
    the active one if there is any."""
    return db.session.scalars(_LATEST_RUN, {"student_id": student_id}).one_or_none()


def chat_state(student: StudentRef, latest: RunRow | None) -> tuple[ChatState, RunRow | None]:
    """The student's chat state, and their active run (if the latest run is active)."""
    run = latest if latest is not None and latest.status == RunStatus.ACTIVE else None
    return ChatState(student.language, run.state() if run else None, latest.lesson_id if latest else None,
                     student.email), run


def next_check_at(lesson_id: str, step_index: int, check_failures: int, catalog: Catalog, settings: Settings,
                  now: datetime) -> datetime | None:
    """When the poller should next look at an active run: soon after activity, then backing off; never for questions.

    A GitHub run is looked at once per ``github_poll_interval_seconds`` (its webhooks come first), the
    first time at a random point of the interval: runs started together spread over it, so the poller's
    requests come at an even pace rather than in a burst (README, polling GitHub).
    """
    lesson = catalog.get(lesson_id)
    if lesson is None or current_step(lesson, RunState(lesson_id, step_index)).check.needs_answer:
        return None
    if lesson.platform == "github":
        interval = settings.github_poll_interval_seconds
        delay = backoff(check_failures + 1, initial=interval, maximum=interval, jitter=0.0, spread=True)
        return now + timedelta(seconds=delay)
    delay = backoff(check_failures + 1, initial=settings.check_interval_seconds, maximum=settings.check_interval_max_seconds,
                    jitter=0.0)
    return now + timedelta(seconds=delay)


def schedule_check(run: LessonRun, catalog: Catalog, settings: Settings, now: datetime) -> None:
    """Plan the poller's next look at the run (none once it ended)."""
    run.next_check_at = (next_check_at(run.lesson_id, run.step_index, run.check_failures, catalog, settings, now)
                         if run.status == RunStatus.ACTIVE else None)


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


@dataclass
class RunChanges:
    """What a dialog outcome changes, decided before anything is written: the ORM (admins' actions) and the
    lean message path (app/chat/store.py) write the same changes each their own way."""

    language: str | None = None                               # the student's new language, if it changed
    run: dict[str, Any] = field(default_factory=dict)         # columns to set on the active run
    results: list[dict[str, Any]] = field(default_factory=list)  # step_results rows of the active run
    events: list[dict[str, Any]] = field(default_factory=list)   # step_events rows of the active run
    completed: bool = False                                   # the active run completed: its grade is queued
    new_run: dict[str, Any] | None = None                     # lesson_runs row of a run started


@dataclass(frozen=True)
class RunRow:
    """The columns of a run that a dialog outcome needs, without ORM tracking."""

    id: int
    lesson_id: str
    status: str
    step_index: int
    points: int
    context: dict[str, Any]
    check_failures: int

    @classmethod
    def of(cls, run: LessonRun) -> RunRow:
        return cls(run.id, run.lesson_id, run.status.value, run.step_index, run.points, dict(run.context or {}),
                   run.check_failures)

    def state(self) -> RunState:
        return RunState(self.lesson_id, self.step_index, self.points, dict(self.context or {}), self.id)


def plan_outcome(language: str, run: RunRow | None, outcome: Outcome, catalog: Catalog, settings: Settings,
                 now: datetime) -> RunChanges:
    """The changes that persist a dialog outcome for a student (in ``language``) whose active run is ``run``."""
    changes = RunChanges(language=outcome.state.language if outcome.state.language != language else None)
    if run is not None:
        changes.run = _active_run_changes(run, outcome, catalog, settings, now)
        changes.results = [{"run_id": run.id, "step_id": step.step_id, "points": step.points, "passed_at": now,
                            "source": "chat"} for step in outcome.passed]
        changes.events = [{"run_id": run.id, "step_id": note.step_id, "kind": note.kind, "detail": note.detail, "at": now}
                          for note in outcome.notes]
        changes.completed = outcome.ended is not None and outcome.ended.status == RunStatus.COMPLETED
    if outcome.started is not None:
        started = outcome.started
        changes.new_run = {
            "lesson_id": started.lesson_id, "context": started.context, "repo_name": started.context.get("repo_name"),
            "started_at": now, "last_activity_at": now, "step_index": 0, "points": 0, "check_failures": 0,
            "status": RunStatus.ACTIVE.value,
            "next_check_at": next_check_at(started.lesson_id, 0, 0, catalog, settings, now)}
    return changes


def _active_run_changes(run: RunRow, outcome: Outcome, catalog: Catalog, settings: Settings,
                        now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"last_activity_at": now, "reminded_at": None}
    if outcome.passed:
        values["check_failures"] = 0
    if outcome.progressed is not None:
        values["step_index"] = outcome.progressed.step_index
        values["points"] = outcome.progressed.points
    if outcome.ended is not None:
        values.update(status=outcome.ended.status, finished_at=now, next_check_at=None)
    else:
        values["next_check_at"] = next_check_at(run.lesson_id, values.get("step_index", run.step_index),
                                                values.get("check_failures", run.check_failures), catalog, settings, now)
    return values


def apply_outcome(student: StudentRef, run: LessonRun | None, outcome: Outcome, catalog: Catalog,
                  settings: Settings) -> LessonRun | None:
    """Persist a dialog outcome for the student (whose row and active run the caller has locked); the new run, if any."""
    changes = plan_outcome(student.language, RunRow.of(run) if run else None, outcome, catalog, settings, utcnow())
    if changes.language is not None:
        set_language(student.id, changes.language)
    if run is not None:
        for column, value in changes.run.items():
            setattr(run, column, RunStatus(value) if column == "status" else value)
        db.session.add_all([StepResult(**row) for row in changes.results])
        db.session.add_all([StepEvent(**{**row, "kind": StepEventKind(row["kind"])}) for row in changes.events])
        if changes.completed:
            queue_grade(run, settings)  # in this transaction: the grade is never lost nor doubled
        db.session.flush()
    if changes.new_run is not None:
        new_run = LessonRun(student_id=student.id, **{**changes.new_run, "status": RunStatus.ACTIVE})
        db.session.add(new_run)
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
