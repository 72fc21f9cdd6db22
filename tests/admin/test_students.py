"""Finding a student and reading their page: runs step by step, the conversation, grades, admin actions."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.students.models import Student
from tests.admin.seed import Seeded, seed_course


def _emails(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/students/\d+">([^<]+)</a>', html)


def test_search_finds_by_part_of_the_email_or_name_in_any_case(admin: FlaskClient, seeded: Seeded) -> None:
    assert _emails(admin.get("/admin/students?q=STUDENT17@").text) == ["seed.student17@school.example"]
    by_name = admin.get("/admin/students?q=студент 17").text  # names of odd k are Russian: Студент 17, 171…179
    assert sorted(_emails(by_name)) == sorted(f"seed.student{k}@school.example" for k in (17, 171, 173, 175, 177, 179))
    assert "Found: 6" in by_name


def test_search_takes_percent_and_underscore_literally(admin: FlaskClient, seeded: Seeded) -> None:
    assert "Found: 0" in admin.get("/admin/students?q=%25").text
    assert "Found: 0" in admin.get("/admin/students?q=seed_student").text


def test_the_student_list_is_paged(admin: FlaskClient, seeded: Seeded) -> None:
    first = admin.get("/admin/students").text
    assert "Found: 200" in first and len(_emails(first)) == 50 and "page 1 of 4" in first
    last = admin.get("/admin/students?page=4").text
    assert len(_emails(last)) == 50 and "page 4 of 4" in last
    beyond = admin.get("/admin/students?page=9").text
    assert "Found: 200" in beyond and "Nobody matches." in beyond


@pytest.mark.parametrize("query", ["Zoë 👩‍🏫", "\u202eevil", "Ｓｔｕｄｅｎｔ", "<script>alert(1)</script>", "a\u0301\u0301\u0301",
                                   "'; DROP TABLE students; --"])
def test_odd_unicode_in_the_search_is_answered_and_shown_escaped(admin: FlaskClient, app: Flask, query: str) -> None:
    db.session.add(Student(email="zoe@school.example", full_name="Zoë 👩‍🏫 <script>alert(1)</script> ‮evil"))
    db.session.commit()
    page = admin.get("/admin/students", query_string={"q": query})
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert db.session.query(Student).count() == 1


@pytest.mark.parametrize(("query", "sentence"), [
    ("x" * 201, "The search is longer than 200 characters: shorten it."),
    ("a\x00b", "The search contains a NUL character (\\u0000): remove it."),
])
def test_an_unusable_search_is_a_400_with_a_sentence(admin: FlaskClient, query: str, sentence: str) -> None:
    page = admin.get("/admin/students", query_string={"q": query})
    assert page.status_code == 400 and sentence in page.text


@pytest.mark.parametrize("page_number", ["0", "-1", "two", "١", "99999999999"])
def test_a_bad_page_number_is_a_400_with_a_sentence(admin: FlaskClient, page_number: str) -> None:
    page = admin.get("/admin/students", query_string={"page": page_number})
    assert page.status_code == 400 and "The page number must be a whole number from 1." in page.text


def test_an_unknown_student_is_a_404_with_a_sentence(admin: FlaskClient) -> None:
    page = admin.get("/admin/students/424242")
    assert page.status_code == 404 and "There is no student 424242." in page.text


def test_a_students_page_shows_their_runs_steps_conversation_and_grades(admin: FlaskClient, app: Flask) -> None:
    seeded = seed_course(db, 12)  # k = 2: completed, grade failed; k = 3: stopped, a reply failed
    completed = admin.get(f"/admin/students/{seeded.student_ids[1]}").text
    assert "git-basics" in completed and completed.count("<td>quiz-status</td>") == 1
    assert "Regrade" in completed and ">Stop<" not in completed
    assert "start git-basics" in completed and "Reply 3 to hint" in completed
    assert "course seed has no assignment for lesson git-basics" in completed
    stopped = admin.get(f"/admin/students/{seeded.student_ids[2]}").text
    assert "Zulip refused the message: the user is deactivated" in stopped and "Resend" in stopped
    active = admin.get(f"/admin/students/{seeded.student_ids[3]}").text
    assert ">Stop<" in active and "Regrade" not in active
