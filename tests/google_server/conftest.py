"""Fixtures for the Google test server's own tests."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.oauth2.credentials import Credentials

from .server import GoogleTestServer

CLASSROOM_SCOPES = [
    "https://www.googleapis.com/auth/classroom.courses",
    "https://www.googleapis.com/auth/classroom.coursework.students",
    "https://www.googleapis.com/auth/classroom.rosters.readonly",
]
DRIVE_SCOPES = ["https://www.googleapis.com/auth/drive"]
SHEETS_SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
ALL_SCOPES = CLASSROOM_SCOPES + DRIVE_SCOPES + SHEETS_SCOPES
TEACHER = "teacher@example.com"


@pytest.fixture
def gs() -> Iterator[GoogleTestServer]:
    """A running server whose CA the client libraries trust; fails the test on contract drift."""
    with GoogleTestServer(seed=1234) as server, server.trust_ca():
        yield server
        assert server.validation_errors == [], "server saw requests/responses outside discovery"


@pytest.fixture
def project(gs: GoogleTestServer) -> str:
    """The app's Cloud project."""
    return gs.add_project("lessonbot")


@pytest.fixture
def app_client(gs: GoogleTestServer, project: str) -> tuple[str, str]:
    """(client_id, client_secret) of the app's OAuth client."""
    return gs.add_oauth_client(project)


@pytest.fixture
def make_credentials(gs: GoogleTestServer, app_client: tuple[str, str]) -> Callable[..., Credentials]:
    """Factory: refresh-token credentials for an account and scopes."""

    def make(email: str = TEACHER, scopes: list[str] | None = None, using: tuple[str, str] | None = None) -> Credentials:
        client_id, secret = using or app_client
        refresh_token = gs.issue_refresh_token(client_id, email, scopes or ALL_SCOPES)
        return Credentials(
            None, refresh_token=refresh_token, client_id=client_id, client_secret=secret, token_uri=gs.url + "/token"
        )

    return make


@pytest.fixture
def credentials(make_credentials: Callable[..., Credentials]) -> Credentials:
    """The teacher's credentials with every scope the app uses."""
    return make_credentials()


@pytest.fixture
def classroom(gs: GoogleTestServer, credentials: Credentials) -> Any:
    """A real Classroom v1 client aimed at the server."""
    return gs.build("classroom", credentials)


@pytest.fixture
def drive(gs: GoogleTestServer, credentials: Credentials) -> Any:
    """A real Drive v3 client aimed at the server."""
    return gs.build("drive", credentials)


@pytest.fixture
def sheets(gs: GoogleTestServer, credentials: Credentials) -> Any:
    """A real Sheets v4 client aimed at the server."""
    return gs.build("sheets", credentials)


@pytest.fixture(autouse=True)
def no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client library's retry back-off instead of sleeping through it."""
    slept: list[float] = []
    shim = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    shim.sleep = slept.append
    monkeypatch.setattr("googleapiclient.http.time", shim)
    return slept
