"""Authorizing Lessonbot's Google account, admin sign-in with an allowlist, students linking from chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.cli.google import start_authorization
from app.db import db
from app.google.client import google_status
from app.google.models import GoogleAuthorization, GoogleLink, OAuthRequest
from app.google.signin import add_admin
from app.google.tokens import load_authorization
from app.settings import Settings
from tests.google.conftest import TEACHER, GoogleWorld, confirm_link, follow_to_callback, link_path, sign_in
from tests.helpers import ChatStudent


def test_google_auth_stores_the_refresh_token_encrypted_and_status_refreshes_it(
        app: Flask, client: FlaskClient, runner: Any, world: GoogleWorld, settings: Settings) -> None:
    result = runner.invoke(args=["google", "auth"])
    assert result.exit_code == 0, result.output
    url = next(line for line in result.output.splitlines() if line.startswith("https://"))
    assert "access_type=offline" in url and "redirect_uri=http%3A%2F%2Flocalhost%2Fgoogle%2Fcallback" in url

    world.gs.auto_approve_as(TEACHER)
    page = sign_in(client, url)
    assert page.status_code == 200, page.text
    assert "Lessonbot now acts as teacher@example.com" in page.text

    stored = load_authorization(settings)
    assert stored is not None and stored.email == TEACHER
    row = db.session.scalars(sa.select(GoogleAuthorization)).one()
    assert stored.refresh_token not in row.refresh_token_encrypted  # encrypted at rest
    assert stored.refresh_token not in repr(stored)
    assert "https://www.googleapis.com/auth/classroom.coursework.students" in stored.scopes

    status = runner.invoke(args=["google", "status"])
    assert status.exit_code == 0, status.output
    assert "teacher@example.com" in status.output and "refreshes OK" in status.output


def test_an_authorization_link_works_once(app: Flask, client: FlaskClient, world: GoogleWorld, settings: Settings) -> None:
    url = start_authorization(settings)
    world.gs.auto_approve_as(TEACHER)
    callback = follow_to_callback(url)
    assert client.get(callback).status_code == 200
    again = client.get(callback)
    assert again.status_code == 400 and "already used" in again.text


def test_revoked_token_tells_the_admin_to_run_google_auth(app: Flask, runner: Any, authorized: GoogleWorld,
                                                          settings: Settings) -> None:
    authorized.gs.revoke(authorized.refresh_token)
    status = google_status(settings)
    assert status is not None and not status.refreshes
    assert "revoked" in str(status.problem) and "./manage.py google auth" in str(status.problem)
    result = runner.invoke(args=["google", "status"])
    assert result.exit_code == 1
    assert "./manage.py google auth" in result.output


def test_status_without_authorization_is_one_clear_line(app: Flask, runner: Any) -> None:
    result = runner.invoke(args=["google", "status"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: Lessonbot has no Google authorization yet: run ./manage.py google auth"


def test_admin_pages_need_google_sign_in_by_an_allowlisted_admin(app: Flask, client: FlaskClient, runner: Any,
                                                                 world: GoogleWorld) -> None:
    assert client.get("/admin/grades").headers["Location"] == "/admin/login"
    world.gs.auto_approve_as("stranger@example.com")
    refused = sign_in(client, client.get("/admin/login").headers["Location"])
    assert refused.status_code == 400 and "not an admin" in refused.text
    assert client.get("/admin/grades").status_code == 302

    assert runner.invoke(args=["admins", "add", "Boss@Example.com"]).exit_code == 0
    assert "boss@example.com" in runner.invoke(args=["admins", "list"]).output
    world.gs.auto_approve_as("boss@example.com")
    landed = sign_in(client, client.get("/admin/login").headers["Location"])
    assert landed.headers["Location"] == "/admin/"  # the courses overview
    page = client.get("/admin/grades")
    assert page.status_code == 200 and "Signed in as boss@example.com" in page.text


def test_admins_add_rejects_a_non_email(app: Flask, runner: Any) -> None:
    result = runner.invoke(args=["admins", "add", "nobody"])
    assert result.exit_code == 1 and "not an email address" in result.output
    assert add_admin("a@example.com") is True and add_admin("A@example.com") is False


def test_student_links_google_account_from_chat(app: Flask, client: FlaskClient, world: GoogleWorld,
                                                tmp_path: Path) -> None:
    student = ChatStudent(client, "zulip-name@chat.example.org", tmp_path)
    path = link_path(student.say("link"))
    browser = app.test_client()
    world.gs.auto_approve_as("student.school@example.com")
    page = sign_in(browser, confirm_link(browser, path))
    assert page.status_code == 200 and "student.school@example.com is linked" in page.text
    link = db.session.scalars(sa.select(GoogleLink)).one()
    assert link.google_email == "student.school@example.com" and link.google_user_id
    assert "A Google account is now linked to you" in student.new_replies()

    reused = browser.get(path)
    assert reused.status_code == 410 and "already used" in reused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthRequest)) == 1


def test_link_in_russian_and_without_google(app: Flask, client: FlaskClient, tmp_path: Path, settings: Settings) -> None:
    student = ChatStudent(client, "ru@chat.example.org", tmp_path)
    student.say("lang ru")
    assert "войдите в тот аккаунт Google" in student.say("связать")
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"google_client_id": None})
    assert "Google is not set up" in ChatStudent(client, "en@chat.example.org", tmp_path).say("link")


def test_google_auth_without_a_web_client_is_one_clear_line(app: Flask, runner: Any, settings: Settings) -> None:
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"google_client_id": None})
    result = runner.invoke(args=["google", "auth"])
    assert result.exit_code == 1
    assert "set LESSONBOT_GOOGLE_CLIENT_ID and LESSONBOT_GOOGLE_CLIENT_SECRET" in result.output
