"""The poller: due step checks, idle reminders and timeouts for active runs.

Run it with ``python -m app.workers.poller`` (under supervisor in production). Several
pollers may share a database: each claims one run at a time with
``SELECT … FOR UPDATE SKIP LOCKED``, so no run is checked by two at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app.admin.chat import run_admin_jobs
from app.boot import boot
from app.db import db, is_postgresql, utcnow
from app.github.archive import archive_ended_repositories
from app.grading.delivery import deliver_due
from app.i18n import Text, render_all
from app.lessons.catalog import Catalog
from app.lessons.engine import evaluate
from app.metrics.exposition import serve_worker_metrics
from app.outbox.service import queue_reply
from app.retention import prune_history
from app.runs.models import LessonRun, RunStatus
from app.runs.service import apply_progress, run_state, schedule_check
from app.settings import Settings
from app.workers.base import StopFlag, backoff, run_forever
from app.workers.models import record_heartbeat
from app.zulip.connect import shared_api
from app.zulip.delivery import ReplyDelivery, run_delivery_loop

log = logging.getLogger(__name__)
BATCH = 50
PRUNE_EVERY_SECONDS = 3600.0


class Poller:
    def __init__(self, settings: Settings, catalog: Catalog, stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stop = stop or StopFlag()
        self.senders: ReplySenders | None = None
        self.next_prune = 0.0  # the first pass prunes

    def run_once(self) -> bool:
        """One pass: due checks, then reminders and timeouts. True if it did anything."""
        did = 0
        did += self._drain(self._claim_due_check, self.check_run)
        did += self._drain(self._claim_timeout, self.time_out)
        did += self._drain(self._claim_reminder, self.remind)
        did += deliver_due(self.settings, self.catalog, BATCH, lambda: self.stop.stopping)  # grades, sheet rows
        did += run_admin_jobs(self.settings, self.catalog, lambda: self.stop.stopping)  # `admin …` from chat
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
        return self._claim(LessonRun.next_check_at, LessonRun.next_check_at <= utcnow())

    def _claim_timeout(self) -> LessonRun | None:
        idle = utcnow() - timedelta(days=self.settings.run_timeout_days)
        return self._claim(LessonRun.last_activity_at, LessonRun.last_activity_at <= idle)

    def _claim_reminder(self) -> LessonRun | None:
        idle = utcnow() - timedelta(hours=self.settings.reminder_after_hours)
        return self._claim(LessonRun.last_activity_at, LessonRun.reminded_at.is_(None), LessonRun.last_activity_at <= idle)

    def _process(self, run: LessonRun, handle: Callable[[LessonRun], None]) -> None:
        """Handle one claimed run in its own transaction; a failure is logged and rescheduled."""
        run_id = run.id
        try:
            handle(run)
            db.session.commit()
        except Exception as error:
            db.session.rollback()
            log.exception("poller: run %s failed in %s; rescheduled", run_id, handle.__name__, extra={"run_id": run_id})
            self._reschedule_after_error(run_id, error)

    def check_run(self, run: LessonRun) -> None:
        lesson = self.catalog.get(run.lesson_id)
        if lesson is None:
            run.next_check_at = None
            log.warning("run %s: lesson %s is no longer served; not checking it", run.id, run.lesson_id)
            return
        progress = evaluate(lesson, run_state(run), report_not_yet=False)
        if progress.result is not None and progress.result.status == "error":
            raise RuntimeError(f"check error: {progress.result.reason.key if progress.result.reason else '?'}")
        if not progress.passed:
            run.check_failures += 1
        apply_progress(run, progress, "poller", self.catalog, self.settings)
        run.last_check_error = None
        if progress.texts:
            queue_reply(run.student, "\n\n".join(render_all(progress.texts, run.student.language)))

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
        if self.senders is not None and self.senders.threads and not self.stop.stopping:
            # Not while stopping: senders that end with the process are not dead ones.
            self.senders.ensure_running()
            record_heartbeat("reply-senders", self.senders.status())
        db.session.commit()


def main() -> None:
    settings, app = boot("poller")
    poller = Poller(settings, app.extensions["lessonbot.catalog"])
    poller.stop.install()
    serve_worker_metrics("poller", settings.metrics_port_poller)
    log.info("poller started (interval %.1f s)", settings.poll_interval_seconds)
    senders = ReplySenders(app, settings, poller.stop)
    poller.senders = senders
    with app.app_context():
        senders.start()
        # Jitter the first pass so several pollers started together spread out.
        poller.stop.event.wait(random.uniform(0, min(1.0, settings.poll_interval_seconds)))
        run_forever(poller.run_once, settings.poll_interval_seconds, poller.stop, backoff)
    senders.join(timeout=30)
    log.info("poller stopped")


class ReplySenders:
    """Deliver chat replies to Zulip in threads of their own, so checks never delay a reply.

    Each sender serves one partition of the students, so each student's replies stay in
    order. A sender thread never dies unnoticed: whatever ends it is logged, and the
    poller's every pass (``ensure_running``) starts a dead one again. Each reports how it
    is doing; the poller's heartbeat carries that to ``/health``.
    """

    def __init__(self, app: Flask, settings: Settings, stop: StopFlag) -> None:
        self.app, self.settings, self.stop = app, settings, stop
        self.count = settings.zulip_sender_threads if settings.is_postgresql else 1
        self.threads: dict[int, threading.Thread] = {}
        self.errors: dict[int, str | None] = {}
        self.restarts = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start every sender (inside an app context); nothing when Zulip is not configured."""
        if not self.settings.zulip_site:
            log.info("Zulip is not configured: chat replies stay in the outbox (the console chat delivers them)")
            return
        shared_api(self.settings, lambda: self.stop.stopping)  # the process's one client, stopping with it
        for partition in range(self.count):
            self._start(partition)

    def _start(self, partition: int) -> None:
        thread = threading.Thread(target=self._run, args=(partition,), name=f"reply-sender-{partition}", daemon=True)
        self.threads[partition] = thread
        thread.start()

    def _run(self, partition: int) -> None:
        try:
            with self.app.app_context():
                delivery = ReplyDelivery(shared_api(self.settings), self.settings, partition, self.count)
                run_delivery_loop(delivery, self.stop, self.settings.poll_interval_seconds,
                                  lambda error: self._report(partition, error))
        except BaseException as error:  # a thread's last word; the poller restarts it
            self._report(partition, f"sender stopped: {error.__class__.__name__}: {error}"[:300])
            log.exception("reply sender %d stopped unexpectedly; the poller starts it again", partition)

    def _report(self, partition: int, error: str | None) -> None:
        with self.lock:
            self.errors[partition] = error

    def ensure_running(self) -> int:
        """Start again every sender thread that ended while the process lives; how many were restarted."""
        if self.stop.stopping:
            return 0
        dead = [partition for partition, thread in self.threads.items() if not thread.is_alive()]
        for partition in dead:
            log.error("reply sender %d was not running; starting it again", partition)
            self.restarts += 1
            self._start(partition)
        return len(dead)

    def status(self) -> dict[str, Any]:
        """For the heartbeat: ok, or the senders' errors (e.g. a refused API key)."""
        with self.lock:
            errors = sorted({error for error in self.errors.values() if error})
        alive = sum(1 for thread in self.threads.values() if thread.is_alive())
        return {"status": "error" if errors else "ok", "errors": errors, "alive": alive, "threads": len(self.threads),
                "restarts": self.restarts}

    def join(self, timeout: float) -> None:
        for thread in self.threads.values():
            thread.join(timeout=timeout)


if __name__ == "__main__":
    main()
