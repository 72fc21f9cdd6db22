"""The poller: due checks, reminders, timeouts, per-item failures, concurrency and SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import db, utcnow
from app.lessons.engine import evaluate
from app.runs.models import LessonRun, RunStatus, StepResult
from app.settings import PROJECT_ROOT, Settings
from app.workers import poller as poller_module
from app.workers.models import WorkerStatus
from app.workers.poller import Poller
from tests import lifetime
from tests.conftest import SECRETS
from tests.helpers import ChatStudent, replies_to


def _poller(app: Flask) -> Poller:
    return Poller(app.extensions["lessonbot.settings"], app.extensions["lessonbot.catalog"])


def _student_with_unseen_push(client: FlaskClient, tmp_path: Path, email: str) -> ChatStudent:
    """A student whose push the hook could not report (no server listens): only the poller can see it."""
    student = ChatStudent(client, email, tmp_path / email)
    student.workdir.mkdir(parents=True)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    return student


def _make_due(*runs: LessonRun) -> None:
    for run in runs:
        run.next_check_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def test_due_check_advances_a_run_the_hook_missed(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    student = _student_with_unseen_push(client, tmp_path, "p1@example.com")
    run = student.run()
    assert run is not None and run.step_index == 0 and run.next_check_at is not None
    assert _poller(app).run_once() is False  # not due yet: nothing happens
    _make_due(run)
    assert _poller(app).run_once() is True
    assert "Step 1 passed (+20)" in student.new_replies()
    run = student.run()
    assert run is not None and run.step_index == 1 and run.results[0].source == "poller"
    assert run.next_check_at is None  # step 2 is a question: nothing to poll
    assert db.session.get(WorkerStatus, "poller") is not None


def test_not_yet_is_silent_and_backs_off(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    student = ChatStudent(client, "p2@example.com", tmp_path)
    student.say("start git-basics")
    student.new_replies()
    delays = []
    for _ in range(3):
        run = student.run()
        _make_due(run)  # type: ignore[arg-type]
        before = utcnow()
        _poller(app).run_once()
        run = student.run()
        delays.append((run.next_check_at - before).total_seconds())  # type: ignore[union-attr,operator]
    assert student.new_replies() == ""
    assert delays[0] < delays[1] < delays[2]


def test_idle_reminder_once_then_timeout(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    student = ChatStudent(client, "p3@example.com", tmp_path)
    student.say("start git-basics")
    student.new_replies()
    run = student.run()
    run.last_activity_at = utcnow() - timedelta(hours=30)  # type: ignore[union-attr]
    db.session.commit()
    _poller(app).run_once()
    _poller(app).run_once()
    assert student.new_replies().count("Reminder: lesson `git-basics` is waiting for you at step 1 of 7") == 1
    run = student.run()
    run.last_activity_at = utcnow() - timedelta(days=15)  # type: ignore[union-attr]
    db.session.commit()
    _poller(app).run_once()
    assert "stopped after 14 days without activity" in student.new_replies()
    assert student.run().status == RunStatus.STOPPED  # type: ignore[union-attr]


def test_one_failing_run_is_logged_and_rescheduled_others_proceed(app: Flask, client: FlaskClient, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    broken = _student_with_unseen_push(client, tmp_path, "broken@example.com")
    healthy = _student_with_unseen_push(client, tmp_path, "healthy@example.com")
    broken_run, healthy_run = broken.run(), healthy.run()
    Path(broken_run.context["repo_path"], "HEAD").unlink()  # type: ignore[union-attr]  # a corrupt repository
    _make_due(broken_run, healthy_run)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        _poller(app).run_once()
    assert "Step 1 passed" in healthy.new_replies()
    failed = broken.run()
    assert failed is not None and failed.step_index == 0 and failed.check_failures == 1
    assert failed.last_check_error and "check error" in failed.last_check_error
    assert failed.next_check_at is not None and failed.next_check_at > utcnow()
    assert any(f"run {failed.id} failed" in record.getMessage() for record in caplog.records)
    assert _poller(app).run_once() is False  # rescheduled, not retried in a loop


def test_two_pollers_never_check_the_same_run_at_once(app: Flask, client: FlaskClient, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    students = [_student_with_unseen_push(client, tmp_path, f"c{i}@example.com") for i in range(12)]
    _make_due(*[student.run() for student in students])  # type: ignore[misc]
    active: dict[int, int] = {}
    checks: list[int] = []
    overlaps: list[int] = []
    lock = threading.Lock()

    def observed_evaluate(lesson, run, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            active[run.run_id] = active.get(run.run_id, 0) + 1
            if active[run.run_id] > 1:
                overlaps.append(run.run_id)
            checks.append(run.run_id)
        time.sleep(0.05)  # widen the window in which a second poller could collide
        try:
            return evaluate(lesson, run, **kwargs)
        finally:
            with lock:
                active[run.run_id] -= 1

    monkeypatch.setattr(poller_module, "evaluate", observed_evaluate)

    def work() -> None:
        with app.app_context():
            _poller(app).run_once()
            db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert overlaps == []
    assert sorted(checks) == sorted(student.run().id for student in students)  # type: ignore[union-attr]
    passed = db.session.scalar(sa.select(sa.func.count()).select_from(StepResult))
    assert passed == len(students)


def test_sigterm_during_a_pass_finishes_cleanly(app: Flask, client: FlaskClient, tmp_path: Path, database_url: str) -> None:
    students = [_student_with_unseen_push(client, tmp_path, f"t{i}@example.com") for i in range(25)]
    _make_due(*[student.run() for student in students])  # type: ignore[misc]
    settings: Settings = app.extensions["lessonbot.settings"]
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_GIT_ROOT=str(settings.git_root),
               LESSONBOT_POLL_INTERVAL_SECONDS="0.2")
    process = lifetime.popen([sys.executable, "-m", "app.workers.poller"], cwd=PROJECT_ROOT, env=env,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if db.session.scalar(sa.select(sa.func.count()).select_from(StepResult)):
            break
        db.session.rollback()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "got signal SIGTERM" in stderr and "poller stopped" in stderr
    db.session.expire_all()
    for student in students:
        run = student.run()
        assert run is not None
        done = len(run.results)
        # Each run is either untouched or fully advanced, with its reply: never half-written.
        assert (run.step_index, done, run.points) in {(0, 0, 0), (1, 1, 20)}
        assert ("Step 1 passed" in "".join(replies_to(student.email))) == (done == 1)
