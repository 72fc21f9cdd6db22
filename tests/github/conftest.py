"""Fixtures for the GitHub platform: the GitHub test server and the app configured as its App."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Flask

from app.settings import Settings
from tests.github_server.server import GitHubTestServer


def write_key(path: Path, pem: bytes) -> Path:
    """The App's private key as production keeps it: a file only its owner reads."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


@pytest.fixture
def github_app(app: Flask, gh: GitHubTestServer, tmp_path: Path) -> Flask:
    """The app with the GitHub App's settings pointing at the test server."""
    settings: Settings = app.extensions["lessonbot.settings"]
    app.extensions["lessonbot.settings"] = settings.model_copy(update={
        "github_api_url": gh.url, "github_app_id": gh.app.id, "github_org": gh.org.login,
        "github_private_key_file": write_key(tmp_path / "github-app.pem", gh.private_key_pem),
    })
    return app
