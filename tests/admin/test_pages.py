"""Each admin page renders the seeded numbers, in Russian and English, for admins only."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.google.signin import sign_out_admin
from tests.admin.conftest import cell, csrf_from, signed_in
from tests.admin.seed import STEPS, Seeded, seed_course

PAGES = ["/admin/", "/admin/lessons/git-basics", "/admin/students", "/admin/grades", "/admin/problems"]


def test_the_overview_counts_students_per_course_lesson_and_state(admin: FlaskClient, seeded: Seeded) -> None:
    page = admin.get("/admin/")
    assert page.status_code == 200
    for course, counts in (('data-course="seed" data-lesson="git-basics"', seeded.on_roster),
                           ('data-course="" data-lesson="git-basics"', seeded.by_state - seeded.on_roster)):
        started = sum(n for state, n in counts.items() if state != "none")
        assert cell(page.text, course, "started") == str(started)
        assert cell(page.text, course, "active") == str(counts["active"] + counts["stuck"])
        assert cell(page.text, course, "stuck") == str(counts["stuck"])
        assert cell(page.text, course, "completed") == str(counts["completed"])
        assert cell(page.text, course, "stopped") == str(counts["stopped"])
    roster = 'data-course="seed" data-lesson="git-basics"'
    for status in ("sent", "pending", "failed"):
        assert cell(page.text, roster, status) == str(seeded.grades_on_roster[status])
    assert "no assignment for lesson git-basics" in page.text
    assert "seed.student" not in page.text, "reasons are grouped without the student's address"


def test_the_overview_gives_the_median_time_to_complete(admin: FlaskClient, app: Flask) -> None:
    seed_course(db, 20)  # completed: k = 1, 2, 10, 11, 12, 20, all on the roster
    minutes = sorted(7 * (5 + k % 30) for k in (1, 2, 10, 11, 12, 20))  # 7 steps of 5 + k % 30 minutes each
    median = (minutes[2] + minutes[3]) / 2
    shown = cell(admin.get("/admin/").text, 'data-course="seed" data-lesson="git-basics"', "median")
    assert shown == (f"{median / 60:.1f} h" if median >= 60 else f"{median:.0f} min")


def test_the_funnel_counts_each_step(admin: FlaskClient, seeded: Seeded) -> None:
    page = admin.get("/admin/lessons/git-basics")
    assert page.status_code == 200
    for index, step in enumerate(STEPS):
        row = f'data-step="{step}"'
        assert cell(page.text, row, "reached") == str(seeded.reached[index]), step
        assert cell(page.text, row, "passed") == str(seeded.passed[index]), step
        assert cell(page.text, row, "stuck") == str(seeded.stuck[index]), step
        assert cell(page.text, row, "hints") == str(seeded.hint_runs[index]), step
    quiz = re.search(r'<tr data-step="quiz-log">(.*?)</tr>', page.text, re.S)
    assert quiz is not None
    for answer, times in seeded.wrong_answers.items():
        assert f"{times} × «{answer}»" in quiz.group(1)
    assert f"{seeded.not_yet} × Branch main has no commits yet." in page.text


def test_the_funnel_charts_are_inline_svg_without_scripts_or_outside_addresses(admin: FlaskClient, seeded: Seeded) -> None:
    page = admin.get("/admin/lessons/git-basics").text
    assert page.count("<svg") == 2
    assert "<script" not in page
    addresses = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert addresses and all(address.startswith("/admin") for address in addresses), addresses
    assert admin.get("/admin/static/admin.css").status_code == 200


def test_an_unknown_lesson_is_a_404_with_a_sentence(admin: FlaskClient) -> None:
    page = admin.get("/admin/lessons/no-such-lesson")
    assert page.status_code == 404 and "There is no loaded lesson no-such-lesson." in page.text


def test_the_problems_page_lists_failed_items_dead_letters_and_checks(admin: FlaskClient, seeded: Seeded) -> None:
    page = admin.get("/admin/problems").text
    failed = len(seeded.failed_replies) + seeded.grades["failed"]
    assert f"Failed outbox items: {failed}" in page
    assert f"Messages the core could not take (dead letters): {seeded.dead_letters}" in page
    assert "Fix the reason, then “Resend” on the student&#39;s page." in page
    assert "worker poller" in page and "supervisorctl start lessonbot:poller" in page  # never started: what to do
    assert "not configured (LESSONBOT_ZULIP_SITE unset)" in page and "not configured (LESSONBOT_GOOGLE_CLIENT_ID unset)" in page


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_in_russian_once_the_admin_chooses_it(admin: FlaskClient, seeded: Seeded, path: str) -> None:
    english = admin.get(path).text
    assert 'lang="en"' in english and "Students" in english
    switched = admin.post("/admin/language", data={"language": "ru", "next": path, "csrf_token": csrf_from(english)})
    assert switched.status_code == 303 and switched.headers["Location"] == path
    russian = admin.get(path).text
    assert 'lang="ru"' in russian and "Студенты" in russian and "Sign out" not in russian


def test_the_language_switch_goes_back_only_to_admin_pages(admin: FlaskClient) -> None:
    token = csrf_from(admin.get("/admin/").text)
    moved = admin.post("/admin/language", data={"language": "ru", "next": "https://elsewhere.example/", "csrf_token": token})
    assert moved.headers["Location"] == "/admin/"


@pytest.mark.parametrize("path", [*PAGES, "/admin/students/1", "/admin/grades.csv"])
def test_someone_not_signed_in_goes_to_the_sign_in_page(client: FlaskClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 302 and page.headers["Location"] == "/admin/login"


def test_a_signed_out_admin_and_one_removed_from_the_allowlist_are_refused(app: Flask) -> None:
    browser = signed_in(app)
    assert browser.get("/admin/").status_code == 200
    sign_out_admin("teacher@school.example")
    db.session.commit()
    assert browser.get("/admin/").headers["Location"] == "/admin/login"
    stranger = app.test_client()
    with stranger.session_transaction() as session:
        session.update(admin_email="stranger@school.example", admin_version=0, admin_signed_in_at=0)
    assert stranger.get("/admin/").headers["Location"] == "/admin/login"


def test_pages_are_readable_on_a_phone(admin: FlaskClient, seeded: Seeded) -> None:
    page = admin.get("/admin/grades").text
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page
    assert '<div class="scroll">' in page
    css = admin.get("/admin/static/admin.css").text
    assert ".scroll { overflow-x: auto;" in css and "@media (max-width: 40rem)" in css
