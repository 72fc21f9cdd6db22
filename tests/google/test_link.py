"""Linking a student's Google account: only the owner of the chat account, only in their browser, only once."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.google.models import GoogleLink, OAuthRequest
from tests.google.conftest import GoogleWorld, confirm_link, csrf_from, link_path, sign_in
from tests.helpers import ChatStudent

ATTACKER = "mallory@chat.example.org"
VICTIM_GOOGLE = "victim.school@example.com"


def _browse(browser: FlaskClient, path: str) -> Any:
    """Open a URL as a browser does: follow redirects through the app and Google's consent page."""
    response = browser.get(path)
    for _ in range(5):
        location = response.headers.get("Location") if response.status_code in (301, 302, 303) else None
        if not location:
            return response
        if location.startswith(("/", "http://localhost/")):
            response = browser.get(location.removeprefix("http://localhost"))
        else:
            response = requests.get(location, allow_redirects=False, timeout=10)
    return response


def _links() -> list[GoogleLink]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(GoogleLink)))


def test_a_victim_who_opens_an_attackers_link_is_shown_whose_chat_account_it_is_and_nothing_is_linked(
        app: Flask, client: FlaskClient, world: GoogleWorld, tmp_path: Path) -> None:
    attacker = ChatStudent(client, ATTACKER, tmp_path)
    path = link_path(attacker.say("link"))
    world.gs.auto_approve_as(VICTIM_GOOGLE)  # the victim is signed in to Google and has consented before

    page = _browse(app.test_client(), path)
    assert page.status_code == 200
    assert ATTACKER in page.text and "Only continue if" in page.text  # names the chat account being linked
    assert _links() == []
    assert VICTIM_GOOGLE not in attacker.new_replies()


def test_a_consent_url_passed_to_another_browser_links_nothing(
        app: Flask, client: FlaskClient, world: GoogleWorld, tmp_path: Path) -> None:
    attacker = ChatStudent(client, ATTACKER, tmp_path)
    path = link_path(attacker.say("link"))
    google_url = confirm_link(app.test_client(), path)  # the attacker confirms in their own browser…

    world.gs.auto_approve_as(VICTIM_GOOGLE)
    victim = app.test_client()
    page = sign_in(victim, google_url)  # …and sends Google's URL to the victim
    assert page.status_code == 400 and "started in another browser" in page.text
    assert _links() == []
    assert VICTIM_GOOGLE not in attacker.new_replies()
    assert _browse(victim, path).status_code == 410  # and the link is spent


@pytest.mark.parametrize("token", ["missing", "forged", "another session's", "tampered"])
def test_link_confirmation_without_a_valid_csrf_token_is_refused(
        app: Flask, client: FlaskClient, world: GoogleWorld, tmp_path: Path, token: str) -> None:
    path = link_path(ChatStudent(client, ATTACKER, tmp_path).say("link"))
    browser, other = app.test_client(), app.test_client()
    genuine = csrf_from(browser.get(path).text)
    data = {"missing": {}, "forged": {"csrf_token": secrets.token_urlsafe(40)},
            "another session's": {"csrf_token": csrf_from(other.get(path).text)},
            "tampered": {"csrf_token": genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")}}[token]
    refused = browser.post(path, data=data)
    assert refused.status_code == 400 and "did not come from this site" in refused.text
    assert "Location" not in refused.headers
    db.session.expire_all()
    assert db.session.scalars(sa.select(OAuthRequest)).one().used_at is None  # nothing spent: the owner can go on
    assert browser.post(path, data={"csrf_token": genuine}).status_code == 302


def test_a_google_account_linked_to_another_student_is_refused(
        app: Flask, client: FlaskClient, world: GoogleWorld, tmp_path: Path) -> None:
    world.gs.auto_approve_as("shared@example.com")
    first = ChatStudent(client, "first@chat.example.org", tmp_path)
    browser = app.test_client()
    assert sign_in(browser, confirm_link(browser, link_path(first.say("link")))).status_code == 200

    second = ChatStudent(client, "second@chat.example.org", tmp_path)
    other_browser = app.test_client()
    page = sign_in(other_browser, confirm_link(other_browser, link_path(second.say("link"))))
    assert page.status_code == 400 and "already linked to another chat account" in page.text
    [link] = _links()
    assert link.google_email == "shared@example.com" and link.student_id != _student_id(second.email)
    assert second.new_replies() == ""

    relinked = sign_in(browser, confirm_link(browser, link_path(first.say("link"))))  # the owner may link again
    assert relinked.status_code == 200 and len(_links()) == 1


def _student_id(email: str) -> int:
    from app.students.models import Student

    return int(db.session.scalar(sa.select(Student.id).where(Student.email == email)) or 0)


def test_an_unverified_google_email_is_refused_for_linking_and_admin_sign_in(
        app: Flask, client: FlaskClient, runner: Any, world: GoogleWorld, tmp_path: Path) -> None:
    world.gs.add_account("unverified@example.com", email_verified=False)
    world.gs.auto_approve_as("unverified@example.com")
    student = ChatStudent(client, "student@chat.example.org", tmp_path)
    browser = app.test_client()
    page = sign_in(browser, confirm_link(browser, link_path(student.say("link"))))
    assert page.status_code == 400 and "has not verified that unverified@example.com" in page.text
    assert _links() == [] and student.new_replies() == ""

    assert runner.invoke(args=["admins", "add", "unverified@example.com"]).exit_code == 0
    admin = app.test_client()
    refused = sign_in(admin, admin.get("/admin/login").headers["Location"])
    assert refused.status_code == 400 and "has not verified" in refused.text
    assert admin.get("/admin/grades").status_code == 302


def test_the_link_reply_in_chat_names_no_email_the_student_did_not_already_have(
        app: Flask, client: FlaskClient, world: GoogleWorld, tmp_path: Path) -> None:
    student = ChatStudent(client, "ru-student@chat.example.org", tmp_path)
    student.say("lang ru")
    browser = app.test_client()
    world.gs.auto_approve_as("ru.school@example.com")
    path = link_path(student.say("связать"))
    assert sign_in(browser, confirm_link(browser, path)).status_code == 200
    reply = student.new_replies()
    assert "Аккаунт Google связан с вами" in reply and "ru.school@example.com" not in reply


def test_the_confirmation_page_escapes_the_chat_name(app: Flask, client: FlaskClient, world: GoogleWorld,
                                                     tmp_path: Path) -> None:
    from app.students.models import Student

    path = link_path(ChatStudent(client, ATTACKER, tmp_path).say("link"))
    student = db.session.scalars(sa.select(Student).where(Student.email == ATTACKER)).one()
    student.full_name = '<script>alert(1)</script><a href="//evil">'
    db.session.commit()
    page = app.test_client().get(path)
    assert "<script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
