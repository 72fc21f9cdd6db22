"""Grade passback through the outbox: exactly once, through quota storms and lost answers; clear reasons."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.cli.grades import sync_grades
from app.courses.models import CourseStudent
from app.courses.service import add_course, create_assignment, get_course, sync_roster
from app.db import db, utcnow
from app.grading.delivery import deliver_due, grading_handlers
from app.grading.service import queue_grade
from app.outbox.dispatcher import Dispatcher, Outcome
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun
from app.settings import Settings
from tests.google.conftest import TEACHER, GoogleWorld, sign_in
from tests.google_server import FaultKind
from tests.helpers import ChatStudent


def _classroom(world: GoogleWorld, settings: Settings, app: Flask, emails: list[str], *, assignment: bool = True
               ) -> tuple[str, str | None]:
    """A course 'git1' with these students, synced; the app's assignment for git-quiz. (course id, work id)"""
    gs = world.gs
    course_id = gs.add_course("Git 1")
    for email in emails:
        gs.add_student(course_id, email, email.split("@")[0].title())
    course = add_course(settings, "git1", "Git 1")
    work_id = None
    if assignment:
        work_id = create_assignment(settings, course, app.extensions["lessonbot.catalog"].get("git-quiz")).coursework_id
    sync_roster(settings, course)
    db.session.commit()
    return course_id, work_id


def _finish_quiz(client: FlaskClient, email: str, tmp_path: Path) -> ChatStudent:
    student = ChatStudent(client, email, tmp_path)
    student.say("start git-quiz")
    assert "You finished" in student.say("git log")
    return student


def _grades() -> list[OutboxItem]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GRADE).order_by(OutboxItem.id)))


def test_a_finished_lesson_is_graded_and_returned_by_the_dispatcher(app: Flask, client: FlaskClient, authorized: GoogleWorld,
                                                                settings: Settings, tmp_path: Path) -> None:
    course_id, work_id = _classroom(authorized, settings, app, ["ann@example.com"])
    _finish_quiz(client, "ann@example.com", tmp_path)
    [item] = _grades()
    assert item.status == OutboxStatus.PENDING and item.payload["points"] == 10  # queued with the completion

    dispatcher = Dispatcher(grading_handlers(settings, app.extensions["lessonbot.catalog"]))
    assert dispatcher.run_once() is True
    submission = authorized.gs.submission_for(course_id, str(work_id), "ann@example.com")
    assert submission["assignedGrade"] == 10 and submission["draftGrade"] == 10 and submission["state"] == "RETURNED"
    [item] = _grades()
    assert item.status == OutboxStatus.SENT and item.external_id == submission["id"]
    dispatcher.run_once()
    assert len(authorized.gs.grade_history(course_id, str(work_id))) == 1


def test_quota_storm_during_grades_sync_lands_every_grade_exactly_once(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    emails = [f"s{i}@example.com" for i in range(8)]
    course_id, work_id = _classroom(authorized, settings, app, emails)
    for email in emails:
        _finish_quiz(client, email, tmp_path)
    gs.faults.storm("classroom", percent=60, seconds=30)
    gs.faults.add("classroom.courses.courseWork.studentSubmissions.patch", FaultKind.DROP_AFTER, times=2)
    gs.faults.add("classroom.courses.courseWork.studentSubmissions.return", FaultKind.SERVER_ERROR, times=2, status=503)

    report = sync_grades(settings, app.extensions["lessonbot.catalog"], sleep=gs.clock.advance, rounds=200)
    assert report.count(Outcome.SENT) == len(emails), report.outcomes
    history = gs.grade_history(course_id, str(work_id))
    assert len({h["submissionId"] for h in history}) == len(history)  # one patch per student
    assert len(history) == len(emails)
    for email in emails:
        submission = gs.submission_for(course_id, str(work_id), email)
        assert (submission["assignedGrade"], submission["state"]) == (10, "RETURNED")
    assert all(item.status == OutboxStatus.SENT for item in _grades())
    assert gs.call_count("classroom.courses.courseWork.studentSubmissions.patch") >= len(emails)
    assert "nothing" not in runner.invoke(args=["grades", "list"]).output


def test_coursework_of_another_project_fails_with_reason_and_is_not_retried(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    course_id, _ = _classroom(authorized, settings, app, ["ann@example.com"], assignment=False)
    gs.add_coursework(course_id, "Интерактивный урок по Git")  # made in the Classroom UI
    _finish_quiz(client, "ann@example.com", tmp_path)
    catalog = app.extensions["lessonbot.catalog"]
    deliver_due(settings, catalog)
    [item] = _grades()
    assert item.status == OutboxStatus.FAILED and item.attempts == 1
    assert "not created by Lessonbot" in str(item.last_error)
    assert "./manage.py assignments create --course git1 --lesson git-quiz" in str(item.last_error)
    calls = gs.call_count("classroom")
    assert deliver_due(settings, catalog) == 0 and gs.call_count("classroom") == calls  # nothing retried
    failed = runner.invoke(args=["grades", "list", "--failed"])
    assert "not created by" in failed.output.replace("\n", " ")


def test_recorded_assignment_that_another_project_owns_gets_the_same_reason(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    course_id, _ = _classroom(authorized, settings, app, ["ann@example.com"])
    other_client, _ = gs.add_oauth_client(gs.add_project("someone-else"))
    authorized.refresh_token = gs.issue_refresh_token(other_client, "teacher@example.com", ["x"])
    work = gs.add_coursework(course_id, "Interactive", created_by_client=other_client)
    db.session.execute(sa.text("UPDATE assignments SET coursework_id = :w"), {"w": work})
    db.session.commit()
    _finish_quiz(client, "ann@example.com", tmp_path)
    deliver_due(settings, app.extensions["lessonbot.catalog"])
    [item] = _grades()
    assert item.status == OutboxStatus.FAILED and "Classroom lets only the Google project" in str(item.last_error)


def test_without_google_the_student_hears_the_grade_is_kept_not_to_link(
        app: Flask, client: FlaskClient, settings: Settings, tmp_path: Path) -> None:
    """The demo has no Google: `link` would answer "Google is not set up", so the grade's note does not ask for it."""
    no_google = settings.model_copy(update={"google_client_id": None, "google_client_secret": None})
    student = _finish_quiz(client, "zed@example.com", tmp_path)
    catalog = app.extensions["lessonbot.catalog"]
    deliver_due(no_google, catalog)
    [item] = _grades()
    assert item.status == OutboxStatus.PENDING
    told = student.new_replies()
    assert "Your grade for “Interactive lesson on Git”, 10 of 10, is kept" in told
    assert "the grade goes to the lesson's assignment in your Google Classroom course" in told
    assert "`link`" not in told
    assert deliver_due(no_google, catalog) == 0 and student.new_replies() == ""  # told once; the grade waits


def test_student_in_no_course_is_told_and_the_grade_waits_until_enrolled(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    course_id, work_id = _classroom(authorized, settings, app, ["ann@example.com"])
    student = _finish_quiz(client, "zed@example.com", tmp_path)
    catalog = app.extensions["lessonbot.catalog"]
    deliver_due(settings, catalog)
    [item] = _grades()
    assert item.status == OutboxStatus.PENDING and "in no synced Classroom course" in str(item.last_error)
    assert "did not find you in any Google Classroom course" in student.new_replies()
    assert deliver_due(settings, catalog) == 0  # waits, not retried in a loop

    gs.add_student(course_id, "zed@example.com", "Zed")
    sync_roster(settings, get_course("git1"))
    db.session.commit()
    assert deliver_due(settings, catalog) == 1
    assert gs.submission_for(course_id, str(work_id), "zed@example.com")["assignedGrade"] == 10
    assert student.new_replies() == ""  # told once


def test_student_on_the_roster_but_not_in_classroom_course_fails_with_the_fix(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    _classroom(authorized, settings, app, ["ann@example.com"])
    authorized.gs.add_account("zed@example.com")
    # A stale roster: zed was in the course at the last sync, Classroom no longer has them.
    db.session.add(CourseStudent(course_id=get_course("git1").id, classroom_user_id="gone", email="zed@example.com"))
    db.session.commit()
    _finish_quiz(client, "zed@example.com", tmp_path)
    deliver_due(settings, app.extensions["lessonbot.catalog"])
    [item] = _grades()
    assert item.status == OutboxStatus.FAILED
    assert "is not a student of course git1" in str(item.last_error) and "link" in str(item.last_error)


def test_missing_assignment_and_revoked_token_have_actionable_reasons(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    _classroom(authorized, settings, app, ["ann@example.com"], assignment=False)
    _finish_quiz(client, "ann@example.com", tmp_path)
    catalog = app.extensions["lessonbot.catalog"]
    authorized.gs.revoke(authorized.refresh_token)
    deliver_due(settings, catalog)
    [item] = _grades()
    assert item.status == OutboxStatus.PENDING and "run `./manage.py google auth`" in str(item.last_error)

    from app.google.tokens import store_authorization
    from tests.google.conftest import SCOPES

    store_authorization(settings, "teacher@example.com", SCOPES,
                        authorized.gs.issue_refresh_token(authorized.client_id, "teacher@example.com", SCOPES))
    db.session.commit()
    report = sync_grades(settings, catalog, sleep=lambda s: None)
    assert report.count(Outcome.FAILED) == 1
    [item] = _grades()
    assert "has no assignment for lesson git-quiz" in str(item.last_error)
    assert "assignments create --course git1 --lesson git-quiz" in str(item.last_error)


def test_a_newer_grade_replaces_an_older_pending_one(app: Flask, client: FlaskClient, authorized: GoogleWorld,
                                                     tmp_path: Path) -> None:
    _finish_quiz(client, "ann@example.com", tmp_path)
    run = db.session.scalars(sa.select(LessonRun)).one()
    run.points = 7
    queue_grade(run, app.extensions["lessonbot.settings"])
    db.session.commit()
    [item] = _grades()
    assert item.payload["points"] == 7 and item.dedupe_key == f"grade:run:{run.id}"


def test_grades_sync_command_reports_and_exits_nonzero_on_failure(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    _classroom(authorized, settings, app, ["ann@example.com"], assignment=False)
    _finish_quiz(client, "ann@example.com", tmp_path)
    result = runner.invoke(args=["grades", "sync"])
    assert result.exit_code == 1
    assert "failed 1" in result.output and "assignments create" in result.output


def test_a_grade_goes_to_every_course_of_the_student_that_has_the_assignment(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    course_1, work_1 = _classroom(authorized, settings, app, ["ann@example.com"])
    course_2 = gs.add_course("Git 2")
    gs.add_student(course_2, "ann@example.com", "Ann")
    second = add_course(settings, "git2", "Git 2")
    work_2 = create_assignment(settings, second, app.extensions["lessonbot.catalog"].get("git-quiz")).coursework_id
    sync_roster(settings, second)
    db.session.commit()
    _finish_quiz(client, "ann@example.com", tmp_path)
    deliver_due(settings, app.extensions["lessonbot.catalog"])
    for course_id, work_id in ((course_1, work_1), (course_2, work_2)):
        assert gs.submission_for(course_id, str(work_id), "ann@example.com")["assignedGrade"] == 10
        assert len(gs.grade_history(course_id, str(work_id))) == 1
    pending = runner.invoke(args=["grades", "list", "--pending"])
    assert "ann@example.com" not in pending.output
    assert "ann@example.com" in runner.invoke(args=["grades", "list"]).output


def test_regrade_sends_a_delivered_grade_again_through_the_outbox_to_a_course_added_since(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    """The student joined a second course after their grade went out: `grades regrade` queues a new grade item,
    the next delivery writes it there, and the first course's grade is not written twice."""
    gs = authorized.gs
    course_1, work_1 = _classroom(authorized, settings, app, ["ann@example.com"])
    run = _finish_quiz(client, "ann@example.com", tmp_path).run()
    assert run is not None
    catalog = app.extensions["lessonbot.catalog"]
    deliver_due(settings, catalog)
    course_2 = gs.add_course("Git 2")
    gs.add_student(course_2, "ann@example.com", "Ann")
    second = add_course(settings, "git2", "Git 2")
    work_2 = create_assignment(settings, second, catalog.get("git-quiz")).coursework_id
    sync_roster(settings, second)
    db.session.commit()

    result = runner.invoke(args=["grades", "regrade", str(run.id)])
    assert result.exit_code == 0 and "queued for Classroom again" in result.output, result.output
    assert gs.submissions(course_2, work_2)[0].get("assignedGrade") is None  # nothing went to Classroom directly
    [first, again] = _grades()
    assert first.status == OutboxStatus.SENT and again.status == OutboxStatus.PENDING

    deliver_due(settings, catalog)
    assert gs.submission_for(course_2, work_2, "ann@example.com")["assignedGrade"] == 10
    assert len(gs.grade_history(course_1, str(work_1))) == 1
    assert [item.status for item in _grades()] == [OutboxStatus.SENT, OutboxStatus.SENT]


def test_grades_waiting_for_authorization_go_out_at_the_next_poll_after_google_auth(
        app: Flask, client: FlaskClient, runner: Any, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    course_id, work_id = _classroom(authorized, settings, app, ["ann@example.com"])
    _finish_quiz(client, "ann@example.com", tmp_path)
    gs.revoke(authorized.refresh_token)
    dispatcher = Dispatcher(grading_handlers(settings, app.extensions["lessonbot.catalog"]))
    dispatcher.run_once()
    [item] = _grades()
    assert item.status == OutboxStatus.PENDING and "run `./manage.py google auth`" in str(item.last_error)
    assert dispatcher.run_once() is False  # it waits; nothing is retried in a loop

    url = next(line for line in runner.invoke(args=["google", "auth"]).output.splitlines() if line.startswith("https://"))
    gs.auto_approve_as(TEACHER)
    assert sign_in(client, url).status_code == 200
    assert dispatcher.run_once() is True  # the next poll, not when the 30-minute wait ends
    [item] = _grades()
    assert item.status == OutboxStatus.SENT
    assert gs.submission_for(course_id, str(work_id), "ann@example.com")["assignedGrade"] == 10


def _storm(settings: Settings, app: Flask, gs: Any, attempts: int) -> OutboxItem:
    """Classroom answers 429 to every call while the grade is tried ``attempts`` times in a row."""
    storm = gs.faults.storm("classroom", percent=100, seconds=24 * 3600)
    for _ in range(attempts):
        dispatcher = Dispatcher(grading_handlers(settings, app.extensions["lessonbot.catalog"]))
        assert dispatcher.process_one(dispatcher.handlers[0], due_only=False) is not None
    gs.faults.remove(storm)
    [item] = _grades()
    return item


def test_after_a_long_quota_storm_a_grade_is_retried_within_a_minute_and_never_given_up(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    _classroom(authorized, settings, app, ["ann@example.com"])
    _finish_quiz(client, "ann@example.com", tmp_path)
    item = _storm(settings, app, authorized.gs, settings.grade_max_attempts + 5)
    assert item.status == OutboxStatus.PENDING and "429" in str(item.last_error)
    assert item.last_attempt_at is not None
    wait = (item.next_attempt_at - item.last_attempt_at).total_seconds()
    assert 0 < wait <= 60 and settings.grade_quota_backoff_max_seconds <= 60


def test_once_classroom_answers_again_the_grade_goes_out_when_its_capped_wait_ends(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    settings = settings.model_copy(update={"grade_quota_backoff_max_seconds": 1.0})
    course_id, work_id = _classroom(authorized, settings, app, ["ann@example.com"])
    _finish_quiz(client, "ann@example.com", tmp_path)
    _storm(settings, app, gs, 15)
    storm_ended = utcnow()
    dispatcher = Dispatcher(grading_handlers(settings, app.extensions["lessonbot.catalog"]))
    deadline = time.monotonic() + 10
    while _grades()[0].status == OutboxStatus.PENDING and time.monotonic() < deadline:
        dispatcher.run_once()
        time.sleep(0.2)
    [item] = _grades()
    assert item.status == OutboxStatus.SENT and item.sent_at is not None
    assert item.sent_at - storm_ended < timedelta(seconds=settings.grade_quota_backoff_max_seconds + 2)
    assert gs.submission_for(course_id, str(work_id), "ann@example.com")["state"] == "RETURNED"


@pytest.mark.parametrize(("title", "taken"), [(" git ", False), ("g it", False), ("Интерактивный урок по\u00a0Git", False),
                                              ("GIT", True), ("интерактивный урок по git", True)])
def test_only_a_title_under_the_classroom_rule_is_taken_as_the_lessons_assignment(
        app: Flask, client: FlaskClient, authorized: GoogleWorld, settings: Settings, tmp_path: Path,
        title: str, taken: bool) -> None:
    gs = authorized.gs
    course_id, _ = _classroom(authorized, settings, app, ["ann@example.com"], assignment=False)
    work_id = gs.add_coursework(course_id, title, created_by_client=authorized.client_id)  # made by Lessonbot's client
    _finish_quiz(client, "ann@example.com", tmp_path)
    deliver_due(settings, app.extensions["lessonbot.catalog"])
    [item] = _grades()
    submission = gs.submission_for(course_id, str(work_id), "ann@example.com")
    if taken:
        assert item.status == OutboxStatus.SENT and submission["assignedGrade"] == 10
    else:
        assert item.status == OutboxStatus.FAILED and "has no assignment for lesson git-quiz" in str(item.last_error)
        assert "assignedGrade" not in submission
