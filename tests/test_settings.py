"""Settings: a missing or malformed setting stops the start with one clear line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT, ConfigError, Settings, load_settings, write_dev_env
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


NUMBER_SETTINGS = sorted(f"LESSONBOT_{name.upper()}" for name, field in Settings.model_fields.items()
                         if field.annotation in (int, float))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e999"])
@pytest.mark.parametrize("name", NUMBER_SETTINGS)
def test_no_number_setting_takes_a_non_finite_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                                    value: str) -> None:
    for key, val in _clean_env(tmp_path, **{**_secrets_env(), name: value}).items():
        monkeypatch.setenv(key, val)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{name} is malformed" in str(raised.value) and "\n" not in str(raised.value)


def _manage_outbox(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "outbox", "list"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("values", "env_file", "message"), [
    ({"DATABASE_URL": "postgresqlx://x"}, None, "DATABASE_URL is malformed (must start with postgresql:// or sqlite://)"),
    ({"DATABASE_URL": "sqlitefoo://x"}, None, "DATABASE_URL is malformed (must start with postgresql:// or sqlite://)"),
    ({"DATABASE_URL": "postgresql://[::1"}, None, "DATABASE_URL is malformed (is not a database URL"),
    ({"DATABASE_URL": ""}, None, "DATABASE_URL is malformed"),
    ({"LESSONBOT_CHECK_INTERVAL_MAX_SECONDS": "inf"}, None,
     "LESSONBOT_CHECK_INTERVAL_MAX_SECONDS is malformed (Input should be a finite number)"),
    ({"LESSONBOT_LOG_DIR": "{file}"}, None, "LESSONBOT_LOG_DIR is malformed ({file} is a file, not a directory)"),
    ({"LESSONBOT_LOG_DIR": "{file}/logs"}, None, "LESSONBOT_LOG_DIR is malformed ({file} is a file, not a directory)"),
    ({}, b"LESSONBOT_DEFAULT_LANGUAGE=en\nLESSONBOT_ZULIP_BOT_NAME=Le\xe7onbot\n",
     "the env file {env} is not UTF-8 text (line 2)"),
    ({}, b"LESSONBOT_DEFAULT_LANGUAGE=en\nLESSONBOT_ZULIP_SITE=\"https://chat.example.org\nLESSONBOT_LOG_LEVEL=INFO\n",
     "the env file {env}, line 2, cannot be read (an unclosed quote?)"),
    ({}, "\ufeffLESSONBOT_DEFAULT_LANGUAGE='en\n".encode(), "the env file {env}, line 1, cannot be read"),
])
def test_bad_settings_are_one_line_naming_them(tmp_path: Path, values: dict[str, str], env_file: bytes | None,
                                               message: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    env = _clean_env(tmp_path, **_secrets_env(), **{k: v.format(file=a_file) for k, v in values.items()})
    if env_file is not None:
        (tmp_path / "bad.env").write_bytes(env_file)
        env["LESSONBOT_ENV_FILE"] = str(tmp_path / "bad.env")
    result = _manage_outbox(env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(file=a_file, env=tmp_path / "bad.env") in lines[0], result.stderr


def test_outbox_list_refuses_a_negative_limit(tmp_path: Path, database_url: str) -> None:
    env = _clean_env(tmp_path, **_secrets_env(), DATABASE_URL=database_url)
    result = subprocess.run([sys.executable, "manage.py", "outbox", "list", "--limit", "-1"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: Invalid value for '--limit': -1 is not in the range 1<=x<=10000. (see manage.py outbox list --help)"]
