"""The management commands admins reach for: each one line on success, one clear line and exit 1 on failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from app.courses.models import Assignment, Course, CourseStudent
from app.db import db
from app.google.models import GoogleLink
from app.google.signin import add_admin, admin_session_valid
from app.google.tokens import store_authorization
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings
from tests.conftest import make_settings
from tests.helpers import ChatStudent

QUIZ = """\
id: quiz
platform: git
title: {ru: "Викторина", en: "Quiz"}
max_points: 15
steps:
  - id: log
    say: {ru: "Какой командой смотреть историю?", en: "Which command shows history?"}
    check: {answer: {accept: ["git log"]}}
    points: 10
  - id: status
    say: {ru: "А состояние рабочей копии?", en: "And the state of the working tree?"}
    check: {answer: {accept: ["git status"]}}
    points: 5
"""
OTHER = QUIZ.replace("id: quiz", "id: other").replace("Quiz", "Other quiz")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Two two-question Git lessons (each run gets a hosted repository); no Google."""
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "quiz.yaml").write_text(QUIZ)
    (lessons / "other.yaml").write_text(OTHER)
    return make_settings(database_url, tmp_path / "git", default_language="en", lessons_dir=lessons)


def one_line_failure(result: Any, *expected: str) -> str:
    """The command failed with exit 1 and one line (no traceback) containing each expected text."""
    output = result.output.strip()
    assert result.exit_code == 1, result.output
    assert len(output.splitlines()) == 1 and "Traceback" not in output, output
    for text in expected:
        assert text in output, output
    return output


def one_line_success(result: Any, *expected: str) -> str:
    output = result.output.strip()
    assert result.exit_code == 0, result.output
    assert len(output.splitlines()) == 1, output
    for text in expected:
        assert text in output, output
    return output


def chat(client: FlaskClient, tmp_path: Path, email: str, *messages: str) -> ChatStudent:
    student = ChatStudent(client, email, tmp_path)
    for message in messages:
        student.say(message)
    return student


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in the output."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in output.splitlines()
            if line.startswith("│")]


def latest_run(student: ChatStudent) -> LessonRun:
    run = student.run()
    assert run is not None
    return run


def course(alias: str, *emails: str) -> Course:
    """A course as `courses add` and `courses sync` leave it (Classroom itself is not needed here)."""
    added = Course(alias=alias, classroom_name=f"{alias.title()} course", classroom_id=f"c-{alias}")
    db.session.add(added)
    db.session.flush()
    for number, email in enumerate(emails):
        db.session.add(CourseStudent(course_id=added.id, classroom_user_id=f"u-{alias}-{number}", email=email))
    db.session.commit()
    return added


# --- admins ---------------------------------------------------------------------------------


def test_admins_remove_takes_an_admin_off_the_list_and_ends_their_sessions(app: Flask, runner: Any,
                                                                          settings: Settings) -> None:
    add_admin("boss@school.example")
    db.session.commit()
    assert admin_session_valid(settings, "boss@school.example", 0, time.time())
    one_line_success(runner.invoke(args=["admins", "remove", " Boss@School.example "]), "boss@school.example removed")
    assert runner.invoke(args=["admins", "list"]).output.startswith("No admins yet")
    assert not admin_session_valid(settings, "boss@school.example", 0, time.time())
    one_line_failure(runner.invoke(args=["admins", "remove", "boss@school.example"]),
                     "boss@school.example is not an admin", "admins list")


# --- courses --------------------------------------------------------------------------------


def test_courses_rename_keeps_the_roster_and_assignments(app: Flask, runner: Any) -> None:
    git1 = course("git1", "ann@example.com")
    db.session.add(Assignment(course_id=git1.id, lesson_id="quiz", coursework_id="w1", title="Quiz"))
    db.session.commit()
    one_line_success(runner.invoke(args=["courses", "rename", "git1", "git-2025"]), "git1 is now git-2025")
    db.session.expire_all()
    renamed = db.session.scalars(sa.select(Course)).one()
    assert renamed.alias == "git-2025"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CourseStudent)) == 1
    assert db.session.scalar(sa.select(Assignment.course_id)) == renamed.id


@pytest.mark.parametrize(("args", "expected"), [
    (["nope", "new"], "no course with alias 'nope'"),
    (["git1", "two words"], "'two words' cannot be a course alias"),
    (["git1", "-x"], "cannot be a course alias"),
    (["git1", "a" * 65], "cannot be a course alias"),
    (["git1", "git2"], "the alias 'git2' is taken by “Git2 course”"),
    (["git1", "git1"], "course git1 is already called git1"),
])
def test_courses_rename_refuses_in_one_line(app: Flask, runner: Any, args: list[str], expected: str) -> None:
    course("git1")
    course("git2")
    one_line_failure(runner.invoke(args=["courses", "rename", "--", *args]), expected)
    assert sorted(db.session.scalars(sa.select(Course.alias))) == ["git1", "git2"]


def test_courses_add_checks_the_alias_before_asking_google(app: Flask, runner: Any) -> None:
    one_line_failure(runner.invoke(args=["courses", "add", "git 1", "Git 1"]), "'git 1' cannot be a course alias")


def test_courses_remove_refuses_while_its_students_have_runs_unless_forced(app: Flask, runner: Any, client: FlaskClient,
                                                                           tmp_path: Path) -> None:
    course("git1", "ann@example.com", "bob@example.com")
    ann = chat(client, tmp_path, "ann@example.com", "start quiz")
    one_line_failure(runner.invoke(args=["courses", "remove", "git1"]),
                     "course git1 has 1 runs of its students and 0 grades not yet in Classroom", "--force")
    assert db.session.scalars(sa.select(Course.alias)).all() == ["git1"]

    one_line_success(runner.invoke(args=["courses", "remove", "git1", "--force"]),
                     "removed git1 (roster of 2); kept 1 runs and 0 waiting grades")
    db.session.expire_all()
    assert db.session.scalars(sa.select(Course)).all() == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CourseStudent)) == 0
    assert latest_run(ann).status == RunStatus.ACTIVE  # the student's run is untouched


def test_courses_remove_of_an_unused_course_and_of_an_unknown_alias(app: Flask, runner: Any) -> None:
    course("empty")
    one_line_success(runner.invoke(args=["courses", "remove", "empty"]), "removed empty (roster of 0)")
    one_line_failure(runner.invoke(args=["courses", "remove", "empty"]), "no course with alias 'empty'")


# --- Google messages ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["courses", "sync"], ["courses", "add", "git1", "Git 1"], ["assignments", "list"]])
def test_without_a_google_client_commands_say_so_not_authorize_again(app: Flask, runner: Any, command: list[str]) -> None:
    output = one_line_failure(runner.invoke(args=command), "Google is not configured: set LESSONBOT_GOOGLE_CLIENT_ID")
    assert "again" not in output


@pytest.mark.parametrize("command", [["courses", "sync"], ["courses", "add", "git1", "Git 1"], ["assignments", "list"]])
def test_never_authorized_says_to_authorize_not_to_authorize_again(app: Flask, runner: Any, settings: Settings,
                                                                   command: list[str]) -> None:
    app.extensions["lessonbot.settings"] = settings.model_copy(
        update={"google_client_id": "id.apps.example", "google_client_secret": SecretStr("secret")})
    output = one_line_failure(runner.invoke(args=command), "Lessonbot has no Google authorization yet",
                              "./manage.py google auth")
    assert "again" not in output


def test_an_authorization_the_secret_key_cannot_read_says_authorize_again(app: Flask, runner: Any,
                                                                          settings: Settings) -> None:
    store_authorization(settings.model_copy(update={"secret_key": SecretStr("another-secret-key-0123456789")}),
                        "teacher@example.com", ["openid"], "refresh-token")
    db.session.commit()
    app.extensions["lessonbot.settings"] = settings.model_copy(
        update={"google_client_id": "id.apps.example", "google_client_secret": SecretStr("secret")})
    one_line_failure(runner.invoke(args=["courses", "sync"]), "cannot be read", "authorize Lessonbot again")


@pytest.mark.parametrize("command", [["courses", "sync"], ["assignments", "list"]])
def test_with_google_but_no_courses_it_says_how_to_add_one(app: Flask, runner: Any, settings: Settings,
                                                           command: list[str]) -> None:
    google = settings.model_copy(update={"google_client_id": "id.apps.example", "google_client_secret": SecretStr("secret")})
    app.extensions["lessonbot.settings"] = google
    store_authorization(google, "teacher@example.com", ["openid"], "refresh-token")
    db.session.commit()
    one_line_failure(runner.invoke(args=command), "no courses yet", "./manage.py courses add ALIAS")


# --- students -------------------------------------------------------------------------------


def test_students_list_filters_by_course_and_search(app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    for email in ("ann@example.com", "bob@example.com", "carl_x@other.org"):
        chat(client, tmp_path, email, "help")
    course("git1", "ann@example.com")
    db.session.add(GoogleLink(student_id=latest_student_id("bob@example.com"), google_email="bob.g@gmail.example"))
    db.session.add(CourseStudent(course_id=db.session.scalar(sa.select(Course.id)), classroom_user_id="u-bob",
                                 email="bob.g@gmail.example"))
    db.session.commit()

    everyone = runner.invoke(args=["students", "list"])
    assert everyone.exit_code == 0
    assert all(email in everyone.output for email in ("ann@example.com", "bob@example.com", "carl_x@other.org"))
    on_course = runner.invoke(args=["students", "list", "--course", "git1"]).output
    assert "ann@example.com" in on_course and "bob@example.com" in on_course and "carl" not in on_course
    found = runner.invoke(args=["students", "list", "--search", "_"]).output  # a character, not a wildcard
    assert "carl_x@other.org" in found and "ann" not in found
    assert "Bob" in runner.invoke(args=["students", "list", "--search", "BOB"]).output
    one_line_success(runner.invoke(args=["students", "list", "--search", "nobody"]), "no students match")
    one_line_failure(runner.invoke(args=["students", "list", "--course", "nope"]), "no course with alias 'nope'")


def latest_student_id(email: str) -> int:
    from app.students.models import Student

    return int(db.session.scalar(sa.select(Student.id).where(Student.email == email)) or 0)


def test_students_show_lists_runs_link_courses_and_grade_deliveries(app: Flask, runner: Any, client: FlaskClient,
                                                                    tmp_path: Path) -> None:
    ann = chat(client, tmp_path, "ann@example.com", "start quiz", "git log", "git status", "start other", "git log")
    course("git1", "ann@example.com")
    db.session.add(GoogleLink(student_id=latest_run(ann).student_id, google_email="ann.g@gmail.example"))
    db.session.commit()

    result = runner.invoke(args=["students", "show", "ANN@example.com"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ann@example.com — Ann (Zulip id none, language en, first seen ")
    assert lines[1] == "courses: git1"
    assert lines[2].startswith("Google account: ann.g@gmail.example (linked ")
    runs, grades = [row for row in table_rows(result.output) if len(row) == 7], table_rows(result.output)[2:]
    assert [row[1:5] for row in runs] == [["quiz", "2/2", "completed", "15"], ["other", "2/2 status", "active", "10"]]
    assert runs[0][5] and runs[0][6] and runs[1][5] and not runs[1][6]  # started, finished
    assert [row[1:6] for row in grades] == [["grade", str(runs[0][0]), "quiz", "15", "pending"]]

    one_line_failure(runner.invoke(args=["students", "show", "nobody@example.com"]),
                     "no student with email 'nobody@example.com'", "students list --search")


# --- runs -----------------------------------------------------------------------------------


def test_runs_list_filters_by_course_lesson_and_status(app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    chat(client, tmp_path, "ann@example.com", "start quiz", "git log", "git status", "start other")
    chat(client, tmp_path, "bob@example.com", "start quiz", "stop")
    chat(client, tmp_path, "carl@example.com", "start other", "git log")
    course("git1", "ann@example.com", "bob@example.com")

    def rows(*options: str) -> list[str]:
        result = runner.invoke(args=["runs", "list", *options])
        assert result.exit_code == 0, result.output
        return [line for line in result.output.splitlines() if "@example.com" in line]

    assert len(rows()) == 4
    assert [row.split("│")[2].strip() for row in rows()] == ["carl@example.com", "bob@example.com", "ann@example.com",
                                                              "ann@example.com"]  # newest first
    assert all("carl" not in row for row in rows("--course", "git1")) and len(rows("--course", "git1")) == 3
    assert len(rows("--lesson", "other")) == 2
    [stopped] = rows("--status", "stopped")
    assert "bob@example.com" in stopped and "1/2 log" in stopped
    [ann] = rows("--lesson", "other", "--status", "active", "--course", "git1", "--limit", "5")
    assert "ann@example.com" in ann and "1/2 log" in ann
    assert len(rows("--limit", "1")) == 1
    one_line_success(runner.invoke(args=["runs", "list", "--lesson", "nope"]), "no runs match")
    one_line_failure(runner.invoke(args=["runs", "list", "--course", "nope"]), "no course with alias 'nope'")
    assert runner.invoke(args=["runs", "list", "--status", "lost"]).exit_code != 0  # click's usage error


def test_runs_stop_ends_the_run_and_tells_the_student(app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    ann = chat(client, tmp_path, "ann@example.com", "start quiz", "git log")
    run = latest_run(ann)
    one_line_success(runner.invoke(args=["runs", "stop", str(run.id)]),
                     f"run {run.id} (ann@example.com, quiz) stopped at step 2/2 status with 10 points")
    run = latest_run(ann)
    assert run.status == RunStatus.STOPPED and run.finished_at is not None and run.next_check_at is None
    assert run.context["ended_by"]["action"] == "stopped" and run.context["ended_by"]["admin"]
    assert "Your teacher stopped your lesson `quiz`; your 10 points stay on record" in ann.new_replies()
    assert "not in a lesson" in ann.say("status")  # the student's own chat agrees

    one_line_failure(runner.invoke(args=["runs", "stop", str(run.id)]), f"run {run.id} already ended: stopped ",
                     "nothing to stop")
    one_line_failure(runner.invoke(args=["runs", "stop", "999"]), "no run 999", "runs list")
    assert not ann.new_replies()


def test_runs_restart_of_an_active_run_keeps_it_and_starts_a_new_one_at_step_one(
        app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    ann = chat(client, tmp_path, "ann@example.com", "start quiz", "git log")
    old = latest_run(ann)
    one_line_success(runner.invoke(args=["runs", "restart", str(old.id)]),
                     f"run {old.id} restarted: ann@example.com begins quiz again as run {old.id + 1}")
    db.session.expire_all()
    old, new = db.session.get(LessonRun, old.id), latest_run(ann)
    assert old is not None and old.status == RunStatus.STOPPED and old.points == 10  # history is kept
    assert old.context["ended_by"]["action"] == "restarted"
    assert new.id != old.id and new.status == RunStatus.ACTIVE and new.step_index == 0 and new.points == 0
    assert new.repo_name and new.repo_name != old.repo_name  # a fresh repository for the new run
    told = ann.new_replies()
    assert "Your teacher restarted your lesson `quiz`: you begin again from step 1." in told
    assert "git clone" in told and "**Step 1 of 2.** Which command shows history?" in told
    assert "Step 1 passed" in ann.say("git log")  # the student carries on in the new run


def test_runs_restart_of_a_finished_run_starts_the_lesson_again_unless_another_is_active(
        app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    ann = chat(client, tmp_path, "ann@example.com", "start quiz", "git log", "git status", "start other")
    [completed, other] = sorted(db.session.scalars(sa.select(LessonRun)).all(), key=lambda run: run.id)
    one_line_failure(runner.invoke(args=["runs", "restart", str(completed.id)]),
                     f"ann@example.com is in another run now (run {other.id}, lesson other)", f"runs stop {other.id}")
    runner.invoke(args=["runs", "stop", str(other.id)])
    ann.new_replies()

    one_line_success(runner.invoke(args=["runs", "restart", str(completed.id)]), "begins quiz again")
    new = latest_run(ann)
    assert new.lesson_id == "quiz" and new.status == RunStatus.ACTIVE and new.step_index == 0
    db.session.expire_all()
    kept = db.session.get(LessonRun, completed.id)
    assert kept is not None and kept.status == RunStatus.COMPLETED and "ended_by" not in kept.context
    assert "Your teacher restarted your lesson `quiz`" in ann.new_replies()
    one_line_failure(runner.invoke(args=["runs", "restart", "999"]), "no run 999")


# --- grades ---------------------------------------------------------------------------------


def grade_items() -> list[OutboxItem]:
    db.session.expire_all()
    query = sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GRADE).order_by(OutboxItem.id)
    return list(db.session.scalars(query))


def test_grades_regrade_queues_a_new_grade_item_after_a_delivered_one(app: Flask, runner: Any, client: FlaskClient,
                                                                      tmp_path: Path) -> None:
    ann = chat(client, tmp_path, "ann@example.com", "start quiz", "git log", "git status")
    run = latest_run(ann)
    [first] = grade_items()
    one_line_success(runner.invoke(args=["grades", "regrade", str(run.id)]),
                     f"run {run.id}: the grade of ann@example.com (15 points) had not reached Classroom yet; queued "
                     f"again now (outbox item {first.id})")
    assert len(grade_items()) == 1  # a waiting grade is not doubled

    first.status = OutboxStatus.SENT  # as the dispatcher leaves it once Classroom has the grade
    db.session.commit()
    one_line_success(runner.invoke(args=["grades", "regrade", str(run.id)]),
                     f"run {run.id}: the grade of ann@example.com (15 points) queued for Classroom again (outbox item")
    [sent, again] = grade_items()
    assert sent.id == first.id and sent.status == OutboxStatus.SENT
    assert again.status == OutboxStatus.PENDING and again.attempts == 0 and again.student_id == run.student_id
    assert again.payload["run_id"] == run.id and again.payload["points"] == 15 and again.payload["requested_by"]
    assert again.dedupe_key == f"grade:run:{run.id}:regrade:1"


def test_grades_regrade_puts_a_failed_grade_back_in_the_queue(app: Flask, runner: Any, client: FlaskClient,
                                                              tmp_path: Path) -> None:
    run = latest_run(chat(client, tmp_path, "ann@example.com", "start quiz", "git log", "git status"))
    [failed] = grade_items()
    failed.status, failed.attempts, failed.last_error = OutboxStatus.FAILED, 5, "gave up"
    db.session.commit()
    one_line_success(runner.invoke(args=["grades", "regrade", str(run.id)]), "queued again now")
    [item] = grade_items()
    assert item.status == OutboxStatus.PENDING and item.attempts == 0


def test_grades_regrade_refuses_runs_without_a_grade(app: Flask, runner: Any, client: FlaskClient, tmp_path: Path) -> None:
    active = latest_run(chat(client, tmp_path, "ann@example.com", "start quiz"))
    stopped = latest_run(chat(client, tmp_path, "bob@example.com", "start quiz", "stop"))
    one_line_failure(runner.invoke(args=["grades", "regrade", str(active.id)]),
                     f"run {active.id} is active: only a completed run has a grade")
    one_line_failure(runner.invoke(args=["grades", "regrade", str(stopped.id)]), f"run {stopped.id} is stopped")
    one_line_failure(runner.invoke(args=["grades", "regrade", "999"]), "no run 999")
    assert grade_items() == []
