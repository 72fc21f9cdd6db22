"""Handling a push: verify, find the run, check the current step, advance, queue the reply."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.db import db, utcnow
from app.git.models import HookSignature
from app.git.signing import MAX_SKEW_SECONDS
from app.i18n import Text, render_all
from app.lessons.catalog import Catalog
from app.lessons.engine import evaluate
from app.outbox.service import queue_reply
from app.runs.models import LessonRun, RunStatus
from app.runs.service import apply_progress, run_state
from app.settings import Settings

log = logging.getLogger(__name__)


class ReplayedSignature(Exception):
    """This signed event was accepted before: a replay must not check or reply twice."""


class UnknownRepository(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"no repository named {name!r}")
        self.name = name


@dataclass
class PushResult:
    status: str                      # checked | inactive
    passed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def remember_signature(signature: str, timestamp: int) -> None:
    """Record an accepted hook signature until it could no longer be valid; ReplayedSignature if already seen.

    Runs in the caller's transaction; the caller commits before acting on the event, so two
    workers that receive the same event at once cannot both act (the primary key decides).
    Expired entries are pruned here, which keeps the table as small as one window of pushes.
    """
    now = utcnow()
    db.session.execute(sa.delete(HookSignature).where(HookSignature.expires_at < now))
    expires_at = datetime.fromtimestamp(timestamp + MAX_SKEW_SECONDS, UTC)
    try:
        with db.session.begin_nested():
            db.session.add(HookSignature(signature=signature, expires_at=expires_at))
    except IntegrityError as error:
        raise ReplayedSignature("This signed event was already received; a replay is refused.") from error


def find_run(repo_name: str, *, lock: bool = False) -> LessonRun:
    query = sa.select(LessonRun).where(LessonRun.repo_name == repo_name)
    if lock:
        query = query.with_for_update()
    run = db.session.scalars(query).one_or_none()
    if run is None:
        raise UnknownRepository(repo_name)
    return run


def handle_push(repo_name: str, catalog: Catalog, settings: Settings) -> PushResult:
    """Check the run's current step after a push; reply to the student in the same transaction."""
    run = find_run(repo_name, lock=True)
    lesson = catalog.get(run.lesson_id)
    if run.status != RunStatus.ACTIVE or lesson is None:
        db.session.rollback()
        return PushResult("inactive")
    run.last_activity_at = utcnow()
    progress = evaluate(lesson, run_state(run))
    apply_progress(run, progress, "hook", catalog, settings)
    texts = [Text("git.push_received"), *progress.texts] if progress.texts else []
    language = run.student.language
    if texts:
        queue_reply(run.student, "\n\n".join(render_all(texts, language)))
    db.session.commit()
    shown = ("step.passed", "step.not_yet", "completed")
    lines = [text.render(language).splitlines()[0] for text in progress.texts if text.key in shown]
    return PushResult("checked", [step.step_id for step in progress.passed], lines)
