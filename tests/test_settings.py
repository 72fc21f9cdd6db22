"""Settings: a missing or malformed setting stops the start with one clear line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT, ConfigError, load_settings, write_dev_env
from tests.conftest import SECRETS


def _clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_") and key != "DATABASE_URL"}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return {**env, "LESSONBOT_ENV_FILE": str(empty), **values}


def _secrets_env() -> dict[str, str]:
    return {f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()}


def test_missing_setting_is_one_clear_line(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, **{k: v for k, v in _secrets_env().items() if k != "LESSONBOT_INTERNAL_TOKEN"})
    result = subprocess.run([sys.executable, "manage.py", "outbox", "list"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "Configuration error: LESSONBOT_INTERNAL_TOKEN is missing. "
        "Set it in the environment or the env file (see README, Settings)."
    ]


def test_worker_refuses_to_start_without_settings(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "app.workers.poller"], cwd=PROJECT_ROOT, env=_clean_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "LESSONBOT_SECRET_KEY is missing" in result.stderr


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DATABASE_URL", "mysql://x", "DATABASE_URL is malformed (must start with postgresql:// or sqlite://)"),
    ("LESSONBOT_SECRET_KEY", "short", "LESSONBOT_SECRET_KEY is malformed (must be at least 16 characters"),
    ("LESSONBOT_POLL_INTERVAL_SECONDS", "soon", "LESSONBOT_POLL_INTERVAL_SECONDS is malformed (Input should be a valid number"),
    ("LESSONBOT_DEFAULT_LANGUAGE", "de", "LESSONBOT_DEFAULT_LANGUAGE is malformed (Input should be 'ru' or 'en')"),
])
def test_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, message: str) -> None:
    for key, val in _clean_env(tmp_path, **{**_secrets_env(), name: value}).items():
        monkeypatch.setenv(key, val)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_env_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "lessonbot.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in _secrets_env().items()) + "\nLESSONBOT_DEFAULT_LANGUAGE=en\n")
    for key in [k for k in os.environ if k.startswith("LESSONBOT_") or k == "DATABASE_URL"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LESSONBOT_ENV_FILE", str(env_file))
    assert load_settings().default_language == "en"
    monkeypatch.setenv("LESSONBOT_DEFAULT_LANGUAGE", "ru")
    settings = load_settings()
    assert settings.default_language == "ru"
    assert settings.database_url.startswith("sqlite:///")  # the demo default
    assert "test-secret" not in repr(settings)  # secrets never print


def test_dev_env_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert write_dev_env(path) is True
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    assert write_dev_env(path) is False and path.read_text() == first
