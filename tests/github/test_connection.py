"""The connection as a GitHub App, and `manage.py github check`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr

from app.github.client import GitHubApp, GitHubError
from app.logs import RedactSecrets
from app.settings import ConfigError, Settings, load_settings
from tests.conftest import make_settings
from tests.github_server.server import GitHubTestServer, new_private_key
from tests.pg import free_port

from .conftest import write_key


def _settings(app: Flask) -> Settings:
    settings: Settings = app.extensions["lessonbot.settings"]
    return settings


def _set(app: Flask, **changes: Any) -> None:
    app.extensions["lessonbot.settings"] = _settings(app).model_copy(update=changes)


def test_check_is_one_line_with_app_org_permissions_and_rate_limit(github_app: Flask, gh: GitHubTestServer,
                                                                   runner: Any) -> None:
    result = runner.invoke(args=["github", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert f"GitHub App lessonbot (id {gh.app.id}) on lessonbot-course: installation {gh.installation.id}" in lines[0]
    assert "administration:write" in lines[0] and "rate limit 5000/5000 left" in lines[0]  # /rate_limit is free


@pytest.mark.parametrize("wrong", ["key", "app id"])
def test_a_wrong_key_or_app_id_is_one_clear_line(github_app: Flask, gh: GitHubTestServer, runner: Any,
                                                 tmp_path: Path, wrong: str) -> None:
    if wrong == "key":
        _set(github_app, github_private_key_file=write_key(tmp_path / "other.pem", new_private_key()))
    else:
        _set(github_app, github_app_id=gh.app.id + 1000)
    result = runner.invoke(args=["github", "check"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "GitHub refused the App's credentials (401): check LESSONBOT_GITHUB_APP_ID and the private key" in result.output


def test_missing_permissions_are_named_and_exit_1(github_app: Flask, gh: GitHubTestServer, runner: Any) -> None:
    gh.app.permissions.pop("administration")
    result = runner.invoke(args=["github", "check"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "MISSING permissions administration:write" in result.output


def test_unconfigured_and_unreachable_are_one_line(app: Flask, github_app: Flask, runner: Any) -> None:
    _set(github_app, github_api_url=f"http://127.0.0.1:{free_port()}")
    unreachable = runner.invoke(args=["github", "check"])
    assert unreachable.exit_code == 1 and "GitHub did not answer" in unreachable.output
    _set(github_app, github_app_id=None)
    unconfigured = runner.invoke(args=["github", "check"])
    assert unconfigured.exit_code == 1 and "GitHub is not configured" in unconfigured.output
    assert "Traceback" not in unreachable.output + unconfigured.output


def test_a_key_file_others_can_read_is_refused_at_start(database_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = write_key(tmp_path / "app.pem", new_private_key())
    key.chmod(0o644)
    monkeypatch.setenv("LESSONBOT_ENV_FILE", str(tmp_path / "none.env"))
    for name, value in {"SECRET_KEY": "s" * 20, "INTERNAL_TOKEN": "t" * 20, "GIT_HOOK_SECRET": "h" * 20,
                        "GITHUB_PRIVATE_KEY_FILE": str(key)}.items():
        monkeypatch.setenv(f"LESSONBOT_{name}", value)
    with pytest.raises(ConfigError, match=r"LESSONBOT_GITHUB_PRIVATE_KEY_FILE is malformed .*mode 644.*chmod 600"):
        load_settings()


def test_a_key_that_is_no_key_is_one_clear_error(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, github_app_id=1, github_org="course",
                             github_private_key=SecretStr("not a key"))
    with pytest.raises(GitHubError, match="LESSONBOT_GITHUB_PRIVATE_KEY is not a PEM private key"):
        GitHubApp(settings)


def test_tokens_are_renewed_before_they_expire(github_app: Flask, gh: GitHubTestServer) -> None:
    gh.hub.token_lifetime_seconds = 61.0  # githubkit renews a minute before expiry
    github = GitHubApp(_settings(github_app))
    github.call("the rate limit", lambda client: client.rest.rate_limit.get())
    time.sleep(1.1)
    github.call("the rate limit", lambda client: client.rest.rate_limit.get())
    assert len([r for r in gh.request_log if r.path.endswith("/access_tokens")]) == 2
    assert all(r.status in (200, 201) for r in gh.request_log)


def test_a_revoked_token_is_replaced_once_without_failing_the_call(github_app: Flask, gh: GitHubTestServer) -> None:
    github = GitHubApp(_settings(github_app))
    github.call("the rate limit", lambda client: client.rest.rate_limit.get())
    gh.hub.tokens.clear()  # GitHub revoked every token
    assert github.call("the rate limit", lambda client: client.rest.rate_limit.get()).status_code == 200
    assert [r.status for r in gh.request_log if r.path == "/rate_limit"] == [200, 401, 200]


def test_tokens_and_keys_never_reach_the_log(gh: GitHubTestServer) -> None:
    token = next(iter(gh.hub.tokens), None) or "ghs_" + "A1b2" * 9
    record = logging.makeLogRecord({"msg": f"calling with {token} and {gh.private_key_pem.decode()}"})
    RedactSecrets().filter(record)
    assert token not in record.getMessage() and "PRIVATE KEY" not in record.getMessage()


def test_the_key_may_come_from_the_env_file_with_escaped_newlines(github_app: Flask, gh: GitHubTestServer,
                                                                   runner: Any) -> None:
    escaped = gh.private_key_pem.decode().strip().replace("\n", "\\n")  # as the deployment's env file holds it
    _set(github_app, github_private_key_file=None, github_private_key=SecretStr(escaped))
    result = runner.invoke(args=["github", "check"])
    assert result.exit_code == 0, result.output
