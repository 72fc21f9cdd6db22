"""Fixtures for the Google features: the app configured against a running GoogleTestServer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.google.tokens import store_authorization
from app.settings import Settings
from tests.conftest import make_settings
from tests.google_server import GoogleTestServer

TEACHER = "teacher@example.com"
SCOPES = [
    "openid", "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/classroom.courses",
    "https://www.googleapis.com/auth/classroom.coursework.students",
    "https://www.googleapis.com/auth/classroom.rosters.readonly",
    "https://www.googleapis.com/auth/classroom.profile.emails",
    "https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/spreadsheets",
]
QUIZ_LESSON = """\
id: git-quiz
platform: git
title: {ru: "Интерактивный урок по Git", en: "Interactive lesson on Git"}
max_points: 10
steps:
  - id: log
    say: {ru: "Какой командой смотреть историю?", en: "Which command shows history?"}
    check: {answer: {accept: ["git log"]}}
    points: 10
"""


@dataclass
class GoogleWorld:
    """The test server, the app's OAuth client and a teacher's Classroom course."""

    gs: GoogleTestServer
    client_id: str
    client_secret: str
    refresh_token: str = ""


@pytest.fixture
def gs() -> Iterator[GoogleTestServer]:
    with GoogleTestServer(seed=4) as server, server.trust_ca():
        yield server
        assert server.validation_errors == [], "server saw requests/responses outside discovery"


@pytest.fixture
def world(gs: GoogleTestServer) -> GoogleWorld:
    client_id, secret = gs.add_oauth_client(gs.add_project("lessonbot"))
    gs.add_account(TEACHER, "Teacher")
    return GoogleWorld(gs, client_id, secret)


@pytest.fixture
def lessons_dir(tmp_path: Path) -> Path:
    """One one-question Git lesson: a run finishes with one message."""
    directory = tmp_path / "lessons"
    directory.mkdir()
    (directory / "git-quiz.yaml").write_text(QUIZ_LESSON)
    return directory


@pytest.fixture
def settings(database_url: str, tmp_path: Path, world: GoogleWorld, lessons_dir: Path) -> Settings:
    gs = world.gs
    return make_settings(
        database_url, tmp_path / "git", default_language="en", lessons_dir=lessons_dir,
        google_client_id=world.client_id, google_client_secret=world.client_secret, public_url="http://localhost",
        google_api_endpoint=gs.url, google_token_uri=gs.https_url + "/token", google_auth_uri=gs.https_url + "/o/oauth2/auth",
        log_dir=tmp_path / "logs", log_upload_chunk_bytes=256 * 1024,
    )


@pytest.fixture
def authorized(app: Flask, world: GoogleWorld, settings: Settings) -> GoogleWorld:
    """Lessonbot acts as the teacher (as after `google auth`)."""
    world.refresh_token = world.gs.issue_refresh_token(world.client_id, TEACHER, SCOPES)
    store_authorization(settings, TEACHER, SCOPES, world.refresh_token)
    db.session.commit()
    return world


def follow_to_callback(url: str) -> str:
    """Play the browser: open Google's consent page, return the app path it redirects to."""
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text
    location = response.headers["Location"]
    assert location.startswith("http://localhost/"), location
    return location.removeprefix("http://localhost")


def sign_in(client: FlaskClient, url: str) -> Any:
    return client.get(follow_to_callback(url))


def csrf_from(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def link_path(reply: str) -> str:
    """The app path of the one-time link URL in the bot's `link` reply."""
    url = next(word for word in reply.split() if word.startswith("http://localhost/google/link/"))
    return url.removeprefix("http://localhost")


def confirm_link(browser: FlaskClient, path: str) -> str:
    """Open a student's link URL and confirm it, as its owner would; Google's consent URL."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    confirmed = browser.post(path, data={"csrf_token": csrf_from(page.text)})
    assert confirmed.status_code == 302, confirmed.text
    return str(confirmed.headers["Location"])
