"""At LESSONBOT_LOG_LEVEL=DEBUG no secret reaches any log sink: libraries stay at WARNING, handlers redact."""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.cli.google import start_authorization
from app.courses.service import add_course, create_assignment
from app.db import db
from app.google.client import google_status
from app.google.models import OAuthRequest
from app.google.tokens import load_authorization
from app.logs import OWN_LOGGERS, THIRD_PARTY_LOGGERS, JsonFormatter, RedactSecrets, configure_logging
from app.settings import Settings
from tests.conftest import SECRETS
from tests.google.conftest import TEACHER, GoogleWorld, follow_to_callback


@pytest.fixture
def debug_logging(settings: Settings) -> Iterator[Callable[[], Settings]]:
    """configure_logging as a process at DEBUG runs it (called inside the test, once its output is captured);
    the test process's own logging is restored afterwards."""
    root = logging.getLogger()
    names = ("", *OWN_LOGGERS, *THIRD_PARTY_LOGGERS)
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, configured = list(root.handlers), getattr(root, "_lessonbot_configured", False)
    debug = settings.model_copy(update={"log_level": "DEBUG"})

    def configure() -> Settings:
        root._lessonbot_configured = False  # type: ignore[attr-defined]
        configure_logging(debug, "core")
        return debug

    yield configure
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root._lessonbot_configured = configured  # type: ignore[attr-defined]


@pytest.mark.parametrize("libraries", ["as configured", "forced to DEBUG"])
def test_a_full_oauth_flow_at_debug_leaves_no_secret_in_any_log(
        app: Flask, client: FlaskClient, world: GoogleWorld, debug_logging: Callable[[], Settings],
        capfd: pytest.CaptureFixture[str], libraries: str) -> None:
    settings, gs = debug_logging(), world.gs
    if libraries == "forced to DEBUG":  # the redaction alone must hold if a library logs its token traffic anyway
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
    url = start_authorization(settings)  # what `./manage.py google auth` prints
    gs.auto_approve_as(TEACHER)
    callback = follow_to_callback(url)
    assert client.get(callback).status_code == 200  # authorization code exchanged for tokens
    status = google_status(settings)  # a refresh
    assert status is not None and status.refreshes
    gs.add_course("Git 1")
    course = add_course(settings, "git1", "Git 1")  # Classroom reads (googleapiclient, httplib2)
    gs.expire_access_tokens()
    create_assignment(settings, course, app.extensions["lessonbot.catalog"].get("git-quiz"))  # refresh, a write
    db.session.commit()

    stored = load_authorization(settings)
    assert stored is not None
    secrets = {
        "client secret": world.client_secret, "refresh token": stored.refresh_token,
        "authorization code": urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)["code"][0],
        "PKCE verifier": str(db.session.scalar(sa.select(OAuthRequest.code_verifier))),
        **{f"access token {i}": token for i, token in enumerate(gs.oauth.tokens)},
        **{f"setting {name}": value for name, value in SECRETS.items()},
    }
    assert len(gs.oauth.tokens) >= 2
    captured = capfd.readouterr()
    files = sorted(Path(str(settings.log_dir)).glob("*.log"))
    output = captured.err + captured.out + "".join(path.read_text() for path in files)
    assert files and "DEBUG core app.google.client: google call: listing courses" in captured.err  # DEBUG is on
    found = [name for name, value in secrets.items() if value in output]
    assert found == [], f"secrets in the logs: {found}"
    assert "eyJ" not in output  # nor an id token
    if libraries == "forced to DEBUG":
        assert "requests_oauthlib" in output and "[redacted]" in output  # the token traffic was logged, masked


def _emit(redact: RedactSecrets, *args: Any, exc: Exception | None = None, **extra: Any) -> str:
    """What a stderr-style handler and the JSON file handler would write for one record."""
    stream = io.StringIO()
    logger = logging.Logger("app.redaction-test", logging.DEBUG)
    for formatter in (logging.Formatter("%(message)s"), JsonFormatter()):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(redact)
        logger.addHandler(handler)
    if exc is None:
        logger.debug(*args, extra=extra)
    else:
        try:
            raise exc
        except Exception:
            logger.exception(*args, extra=extra)
    return stream.getvalue()


SECRET = "s3cr3t-Value_1234567890"


@pytest.mark.parametrize(("line", "secret"), [
    ("POST /token body: grant_type=authorization_code&code=4%2F0AQSTgQ{s}&code_verifier={s}", SECRET),
    ("refresh_token=1//{s}&client_id=x&client_secret={s}", SECRET),
    ('Response content was {{"access_token": "ya29.{s}", "refresh_token": "1//{s}", "id_token": "eyJa.eyJb.{s}"}}', SECRET),
    ("headers {{'Authorization': 'Bearer {s}'}}", SECRET),
    ("Authorization: Bearer {s}", SECRET),
    ("a bare refresh token 1//{s} in text", SECRET),
    ("a bare access token ya29.{s} in text", SECRET),
    ("client secret GOCSPX-{s} in text", SECRET),
    ("redirect http://x/cb?state=abc&code=4/{s}&scope=openid", SECRET),
    ("git clone https://student-7:{s}@lessons.example.org/git/r.git failed", SECRET),
    ("the app's own secret key {s} in text", SECRETS["secret_key"]),
    ("the internal token {s} in text", SECRETS["internal_token"]),
])
def test_the_redaction_filter_masks_what_looks_like_a_secret(line: str, secret: str) -> None:
    redact = RedactSecrets(SECRETS.values())
    text = line.format(s=secret)
    for output in (_emit(redact, "%s", text), _emit(redact, text.replace("%", "%%")),
                   _emit(redact, "failed", exc=RuntimeError(text)), _emit(redact, "with extra", detail=text)):
        assert secret not in output and "[redacted]" in output, output
        for entry in output.splitlines():
            if entry.startswith("{"):
                json.loads(entry)  # still valid JSON


def test_library_loggers_stay_at_warning_whatever_the_setting(debug_logging: Callable[[], Settings]) -> None:
    debug_logging()
    for name in ("requests_oauthlib", "oauthlib.oauth2.rfc6749.clients.base", "urllib3.connectionpool",
                 "google.auth.transport.requests", "googleapiclient.discovery", "httplib2", "some.other.library"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("app.grading.delivery").getEffectiveLevel() == logging.DEBUG
