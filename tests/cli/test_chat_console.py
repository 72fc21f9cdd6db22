"""./manage.py chat --script: a whole lesson from the console, with real git and real hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from app.settings import PROJECT_ROOT
from tests.conftest import SECRETS
from tests.pg import free_port

SCRIPT = PROJECT_ROOT / "tests" / "scripts" / "git-basics.chat"


def _run_chat(database_url: str, tmp_path: Path, script: Path, email: str,
              wait: float = 10) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_GIT_ROOT=str(tmp_path / "git"),
               HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run([sys.executable, "manage.py", "chat", "--student", email, "--script", str(script),
                           "--workdir", str(tmp_path / "work"), "--port", str(free_port()), "--timeout", str(wait)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_scripted_console_student_completes_git_basics(app: Flask, database_url: str, tmp_path: Path) -> None:
    result = _run_chat(database_url, tmp_path, SCRIPT, "console@example.com")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Score: 100 of 100" in result.stdout and "script passed" in result.stdout


def test_failed_expectation_exits_nonzero_and_says_why(app: Flask, database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "wrong.chat"
    script.write_text("> help\n< this text never comes\n")
    result = _run_chat(database_url, tmp_path, script, "wrong@example.com", wait=2)
    assert result.returncode == 1
    assert "script line 2: expected a reply containing 'this text never comes'" in result.stderr
