"""Shared fixtures: a real PostgreSQL, the app, its client, a live HTTP server, git workspaces."""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from app import create_app
from app.db import db
from app.settings import Settings
from tests import lifetime
from tests.pg import PgCluster

pytest_plugins = ["tests.github_server.fixtures"]  # gh: the GitHub test server, for tests/github and tests/github_server

SECRETS = {
    "secret_key": "test-secret-key-0123456789",
    "internal_token": "test-internal-token-0123456789",
    "git_hook_secret": "test-hook-secret-0123456789",
}


def pytest_configure(config: pytest.Config) -> None:
    """A killed `make test` takes this run, and through it every server it started, with it."""
    lifetime.die_with_parent()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Undo what killed runs left behind: their servers, directories, namespaces, nft tables."""
    swept = lifetime.sweep_dead()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if swept and reporter is not None:
        reporter.write_line(f"swept what {len(swept)} killed test run(s) left: {', '.join(path.name for path in swept)}")


@pytest.fixture(autouse=True)
def _fresh_urlopen() -> Iterator[None]:
    """urllib's shared opener reads the proxy variables once, when it is built: one built while a test had set
    HTTP_PROXY (tests/zulip/test_api_environment.py) sent every later test's urlopen to that dead proxy."""
    yield
    urllib.request.install_opener(None)  # type: ignore[arg-type]  # None: the next urlopen builds it afresh


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """LESSONBOT_TEST_DATABASE_URL if given, else a throwaway cluster; migrated to head."""
    given = os.environ.get("LESSONBOT_TEST_DATABASE_URL")
    cluster = None if given else PgCluster().start()
    try:
        url = given or cluster.create_database("lessonbot_test")  # type: ignore[union-attr]
        app = create_app(make_settings(url, Path("/nonexistent")))
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.engine.dispose()
        yield url
    finally:
        if cluster:
            cluster.stop()


def make_settings(database_url: str, git_root: Path, **overrides: Any) -> Settings:
    """Settings for tests: nothing read from the environment or .env."""
    # Hooks post nowhere unless a test starts live_server (port 9 is "discard": nothing listens).
    values: dict[str, Any] = {**SECRETS, "database_url": database_url, "git_root": git_root,
                              "hook_url": "http://127.0.0.1:9/git/hook", **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "git", default_language="en")


def _truncate_all() -> None:
    tables = ", ".join(table.name for table in db.metadata.sorted_tables)
    db.session.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.session.commit()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings, TESTING=True)
    with app.app_context():
        _truncate_all()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app on a loopback port; hosted repositories' hooks post here."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings: Settings = app.extensions["lessonbot.settings"]
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"hook_url": f"{url}/git/hook"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    thread.join(timeout=5)
