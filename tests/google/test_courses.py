"""Courses under aliases, roster import, and the lessons' assignments in Classroom."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.cli.courses import sync_courses
from app.courses.models import Assignment, CourseStudent
from app.courses.service import CourseError, add_course, get_course, title_matches
from app.db import db
from app.settings import Settings
from tests.google.conftest import GoogleWorld


def test_courses_add_finds_the_course_by_name_and_sync_imports_its_roster(app: Flask, runner: Any,
                                                                         authorized: GoogleWorld) -> None:
    gs = authorized.gs
    course_id = gs.add_course("Git для начинающих", section="A")
    gs.add_course("Другой курс")
    gs.add_student(course_id, "ann@example.com", "Ann Lee")
    gs.add_student(course_id, "bob@example.com", "Bob Stone")

    added = runner.invoke(args=["courses", "add", "git1", "git ДЛЯ начинающих"])
    assert added.exit_code == 0, added.output
    assert f"Classroom id {course_id}" in added.output
    synced = runner.invoke(args=["courses", "sync"])
    assert synced.exit_code == 0 and "git1: 2 students" in synced.output
    roster = db.session.scalars(sa.select(CourseStudent).order_by(CourseStudent.email)).all()
    assert [(s.email, s.full_name) for s in roster] == [("ann@example.com", "Ann Lee"), ("bob@example.com", "Bob Stone")]
    listing = runner.invoke(args=["courses", "list"])
    assert "git1" in listing.output and "Git для начинающих" in listing.output and "2" in listing.output


@pytest.mark.parametrize(("names", "wanted", "message"), [
    ([], "Nope", "no active Classroom course is named 'Nope'"),
    (["Twice", "Twice"], "Twice", "2 Classroom courses are named 'Twice'"),
])
def test_courses_add_reports_none_or_several_matches(app: Flask, runner: Any, authorized: GoogleWorld,
                                                     names: list[str], wanted: str, message: str) -> None:
    for name in names:
        authorized.gs.add_course(name)
    result = runner.invoke(args=["courses", "add", "x", wanted])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_unknown_alias_is_one_clear_line(app: Flask, runner: Any, authorized: GoogleWorld) -> None:
    result = runner.invoke(args=["courses", "sync", "nope"])
    assert result.exit_code == 1 and "no course with alias 'nope'" in result.output


def test_assignments_create_and_list_show_who_may_grade(app: Flask, runner: Any, authorized: GoogleWorld,
                                                       settings: Settings) -> None:
    gs = authorized.gs
    course_id = gs.add_course("Git 101")
    add_course(settings, "git101", "Git 101")
    db.session.commit()
    created = runner.invoke(args=["assignments", "create", "--course", "git101", "--lesson", "git-quiz"])
    assert created.exit_code == 0, created.output
    work = next(w for w in gs.coursework(course_id))
    assert work["title"] == "Интерактивный урок по Git" and work["maxPoints"] == 10
    assert "начать git-quiz" in work["description"]
    assignment = db.session.scalars(sa.select(Assignment)).one()
    assert assignment.coursework_id == work["id"]

    gs.add_coursework(course_id, "git")  # made by hand in the Classroom UI
    listing = runner.invoke(args=["assignments", "list"])
    assert listing.exit_code == 0, listing.output
    assert f"{assignment.coursework_id} │ true" in listing.output
    assert "│ false" in listing.output
    assert "not created by Lessonbot" in listing.output and "assignments create" in listing.output


def test_assignments_create_for_an_unknown_lesson_or_course(app: Flask, runner: Any, authorized: GoogleWorld) -> None:
    result = runner.invoke(args=["assignments", "create", "--course", "x", "--lesson", "nope"])
    assert result.exit_code == 1 and "no lesson 'nope'" in result.output
    result = runner.invoke(args=["assignments", "create", "--course", "x", "--lesson", "git-quiz"])
    assert result.exit_code == 1 and "no course with alias 'x'" in result.output


def test_sync_of_one_alias(app: Flask, authorized: GoogleWorld, settings: Settings) -> None:
    course_id = authorized.gs.add_course("One")
    authorized.gs.add_student(course_id, "c@example.com")
    add_course(settings, "one", "One")
    db.session.commit()
    assert sync_courses(settings, "one") == {"one": 1}
    with pytest.raises(CourseError):
        get_course("two")


@pytest.mark.parametrize(("title", "matches"), [
    ("git", True), ("Git", True), ("GIT", True),
    ("Интерактивный урок по Git", True), ("интерактивный урок по git", True), ("ИНТЕРАКТИВНЫЙ УРОК ПО GIT", True),
    ("Интерактивныи\u0306 урок по Git", True),  # й decomposed (и + combining breve): the same text after NFC
    (" git ", False), ("git ", False), (" git", False), ("g it", False), ("git\t", False), ("git\n", False),
    ("Интерактивный  урок по Git", False), ("интерактивный  урок по GIT", False),  # two spaces
    (" Интерактивный урок по Git", False), ("Интерактивный урок по Git ", False),
    ("Интерактивный урок по\u00a0Git", False),  # NBSP
    ("\u200bgit", False), ("git\u200b", False), ("\ufeffgit", False),  # zero-width space, BOM
    ("ｇｉｔ", False),  # fullwidth letters are other characters
    ("Интерактивный урок по Git.", False), ("Урок по Git", False), ("Interactive lesson on Git", False),
    ("Git homework", False), ("Интерактивный урок по Zulip", False), ("Интерактивный урок по GitHub", False),
    ("", False), (" ", False),
])
def test_the_title_rule(app: Flask, title: str, matches: bool) -> None:
    lesson = app.extensions["lessonbot.catalog"].get("git-quiz")
    assert title_matches(title, lesson) is matches
