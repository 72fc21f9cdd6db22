"""The poller: due step checks, idle reminders and timeouts for active runs, and pruning old history.

Delivering what these queue (replies, grades) is the outbox dispatcher's work
(app/workers/dispatcher.py), not the poller's.

Run it with ``python -m app.workers.poller`` (under supervisor in production). Several
pollers may share a database: each claims one run at a time with
``SELECT … FOR UPDATE SKIP LOCKED``, so no run is checked by two at once.

While GitHub has asked us to wait (a rate limit, app/github/budget.py) GitHub runs are not
claimed; a check that meets the pause moves its run to a spread point after it, without
counting a failure against the run: the wait is GitHub's, not the student's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.boot import boot
from app.db import db, is_postgresql, utcnow
from app.github.archive import archive_ended_repositories
from app.github.client import paused_until
from app.i18n import Text, render_all
from app.lessons.catalog import Catalog
from app.lessons.engine import Progress, evaluate
from app.loop import StopFlag, backoff, isolated, run_forever
from app.metrics.exposition import serve_worker_metrics
from app.outbox.service import queue_reply
from app.retention import prune_history
from app.runs.models import LessonRun, RunStatus
from app.runs.service import apply_progress, run_state, schedule_check
from app.settings import Settings
from app.workers.models import record_heartbeat

log = logging.getLogger(__name__)
BATCH = 50
PRUNE_EVERY_SECONDS = 3600.0


class Poller:
    def __init__(self, settings: Settings, catalog: Catalog, stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stop = stop or StopFlag()
        self.next_prune = 0.0  # the first pass prunes

    def run_once(self) -> bool:
        """One pass: due checks, then reminders and timeouts. True if it did anything."""
        did = 0
        did += self._drain(self._claim_due_check, self.check_run)
        did += self._drain(self._claim_timeout, self.time_out)
        did += self._drain(self._claim_reminder, self.remind)
        self._prune_when_due()
        self._heartbeat(did)
        return did > 0

    def _prune_when_due(self) -> None:
        """Once an hour, archive ended runs' GitHub repositories and delete history past keeping
        (app/retention.py); a failure waits for the next hour."""
        if time.monotonic() < self.next_prune:
            return
        self.next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        self._archive_repositories()
        try:
            pruned = prune_history(self.settings)
        except Exception:
            db.session.rollback()
            log.exception("pruning history failed; trying again in an hour")
            return
        if pruned.total:
            log.info("pruned history: %s", ", ".join(f"{count} {what}" for what, count in pruned.counts.items() if count))

    def _archive_repositories(self) -> None:
        """Ended runs' GitHub repositories, archived once their time is up (app/github/archive.py)."""
        try:
            archived = archive_ended_repositories(self.settings)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("archiving GitHub repositories failed; trying again in an hour")
            return
        if archived:
            log.info("archived %d GitHub repositories of ended runs", archived)

    def _drain(self, claim: Callable[[], LessonRun | None], handle: Callable[[LessonRun], None]) -> int:
        done = 0
        while done < BATCH and not self.stop.stopping:
            run = claim()
            if run is None:
                db.session.rollback()
                break
            self._process(run, handle)
            done += 1
        return done

    def _claim(self, order: Any, *conditions: Any) -> LessonRun | None:
        """The first active run meeting ``conditions`` in ``order``: the column of the partial index
        that holds exactly those runs (runs/models.py), so a claim never walks finished history."""
        query = sa.select(LessonRun).where(LessonRun.status == RunStatus.ACTIVE, *conditions).order_by(order).limit(1)
        if is_postgresql():
            query = query.with_for_update(skip_locked=True)
        return db.session.scalars(query).first()

    def _claim_due_check(self) -> LessonRun | None:
        due = LessonRun.next_check_at <= utcnow()
        if paused_until(self.settings):
            return self._claim(LessonRun.next_check_at, due, LessonRun.lesson_id.notin_(self._github_lessons()))
        return self._claim(LessonRun.next_check_at, due)

    def _github_lessons(self) -> list[str]:
        return [lesson.id for lesson in self.catalog if lesson.platform == "github"]

    def _claim_timeout(self) -> LessonRun | None:
        idle = utcnow() - timedelta(days=self.settings.run_timeout_days)
        return self._claim(LessonRun.last_activity_at, LessonRun.last_activity_at <= idle)

    def _claim_reminder(self) -> LessonRun | None:
        idle = utcnow() - timedelta(hours=self.settings.reminder_after_hours)
        return self._claim(LessonRun.last_activity_at, LessonRun.reminded_at.is_(None), LessonRun.last_activity_at <= idle)

    def _process(self, run: LessonRun, handle: Callable[[LessonRun], None]) -> None:
        """Handle one claimed run in its own transaction; a failure is logged and rescheduled."""
        run_id = run.id

        def work() -> None:
            handle(run)
            db.session.commit()

        def on_error(error: Exception) -> None:
            db.session.rollback()
            self._reschedule_after_error(run_id, error)

        isolated(f"poller: {handle.__name__} of run {run_id}", work, on_error)

    def check_run(self, run: LessonRun) -> None:
        lesson = self.catalog.get(run.lesson_id)
        if lesson is None:
            run.next_check_at = None
            log.warning("run %s: lesson %s is no longer served; not checking it", run.id, run.lesson_id)
            return
        progress = evaluate(lesson, run_state(run), report_not_yet=False)
        if _paused(progress):
            self._after_pause(run)
            return
        if progress.result is not None and progress.result.status == "error":
            raise RuntimeError(f"check error: {progress.result.reason.key if progress.result.reason else '?'}")
        if not progress.passed:
            run.check_failures += 1
        apply_progress(run, progress, "poller", self.catalog, self.settings)
        run.last_check_error = None
        if progress.texts:
            queue_reply(run.student, "\n\n".join(render_all(progress.texts, run.student.language)))

    def _after_pause(self, run: LessonRun) -> None:
        """Look at the run again at a spread point of the interval after GitHub's pause; not a failure."""
        interval = self.settings.github_poll_interval_seconds
        until = max(paused_until(self.settings), time.time())
        delay = backoff(1, initial=interval, maximum=interval, jitter=0.0, spread=True)
        run.next_check_at = datetime.fromtimestamp(until + delay, UTC)

    def remind(self, run: LessonRun) -> None:
        lesson = self.catalog.get(run.lesson_id)
        total = len(lesson.steps) if lesson else 0
        text = Text("reminder", lesson=run.lesson_id, step=run.step_index + 1, total=total)
        queue_reply(run.student, text.render(run.student.language))
        run.reminded_at = utcnow()

    def time_out(self, run: LessonRun) -> None:
        days = round(self.settings.run_timeout_days)
        queue_reply(run.student, Text("timeout", lesson=run.lesson_id, days=days).render(run.student.language))
        run.status = RunStatus.STOPPED
        run.finished_at = utcnow()
        run.next_check_at = None

    def _reschedule_after_error(self, run_id: int, error: Exception) -> None:
        run = db.session.get(LessonRun, run_id)
        if run is None:
            return
        run.check_failures += 1
        run.last_check_error = f"{error.__class__.__name__}: {error}"[:500]
        schedule_check(run, self.catalog, self.settings, utcnow())
        # A reminder that failed is not retried in a loop; the next idle period brings a new one.
        run.reminded_at = run.reminded_at or utcnow()
        db.session.commit()

    def _heartbeat(self, did: int) -> None:
        record_heartbeat("poller", {"last_pass_items": did})
        db.session.commit()


def _paused(progress: Progress) -> bool:
    result = progress.result
    return result is not None and result.status == "error" and result.reason is not None \
        and result.reason.key == "github.paused"


def main() -> None:
    settings, app = boot("poller")
    poller = Poller(settings, app.extensions["lessonbot.catalog"])
    poller.stop.install()
    serve_worker_metrics("poller", settings.metrics_port_poller)
    log.info("poller started (interval %.1f s)", settings.poll_interval_seconds)
    with app.app_context():
        run_forever(poller.run_once, settings.poll_interval_seconds, poller.stop)
    log.info("poller stopped")


if __name__ == "__main__":
    main()
