"""./manage.py zulip check: who the bot is and where, or one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flask import Flask

from app.settings import PROJECT_ROOT
from tests.pg import free_port
from tests.zulip.conftest import worker_env
from tests.zulip_server.server import ZulipTestServer


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "zulip", "check"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_check_prints_bot_server_and_version(zulip_app: Flask, zs: ZulipTestServer, database_url: str, tmp_path: Path) -> None:
    result = _check(worker_env(zulip_app, database_url, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "bot:     Lessonbot <lessonbot-bot@example.com>" in result.stdout
    assert f"at {zs.url}" in result.stdout and "version: Zulip 9.2" in result.stdout


def test_wrong_key_is_one_clear_line(zulip_app: Flask, database_url: str, tmp_path: Path) -> None:
    env = worker_env(zulip_app, database_url, tmp_path) | {"LESSONBOT_ZULIP_API_KEY": "wrong-key"}
    result = _check(env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "refused the bot's email or API key" in result.stderr


def test_unreachable_server_is_one_clear_line(zulip_app: Flask, database_url: str, tmp_path: Path) -> None:
    env = worker_env(zulip_app, database_url, tmp_path) | {"LESSONBOT_ZULIP_SITE": f"http://127.0.0.1:{free_port()}"}
    result = _check(env)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "Cannot reach Zulip" in result.stderr and "connection failed" in result.stderr


def test_missing_settings_are_named(zulip_app: Flask, database_url: str, tmp_path: Path) -> None:
    env = worker_env(zulip_app, database_url, tmp_path)
    del env["LESSONBOT_ZULIP_API_KEY"]
    result = _check(env)
    assert result.returncode == 1 and "Zulip is not configured: set LESSONBOT_ZULIP_API_KEY" in result.stderr
