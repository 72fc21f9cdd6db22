"""./manage.py chat with bad options, scripts and lines: one clear line and exit 1, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from app.settings import PROJECT_ROOT
from tests.conftest import SECRETS
from tests.pg import free_port


def _chat(database_url: str, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_GIT_ROOT=str(tmp_path / "git"),
               HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", LESSONBOT_DEFAULT_LANGUAGE="en")
    defaults = {"--workdir": str(tmp_path / "work"), "--port": str(free_port()), "--timeout": "5"}
    options = [item for name, value in defaults.items() if name not in args for item in (name, value)]
    return subprocess.run([sys.executable, "manage.py", "chat", *options, *args], cwd=PROJECT_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def _script(tmp_path: Path, content: bytes | str) -> str:
    path = tmp_path / "dialog.chat"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def test_a_student_email_in_mixed_case_sees_the_replies(app: Flask, database_url: str, tmp_path: Path) -> None:
    script = _script(tmp_path, "> help\n< Commands:\n")
    result = _chat(database_url, tmp_path, "--student", "Mixed.Case@Example.COM", "--script", script)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "script passed" in result.stdout


@pytest.mark.parametrize(("args", "script", "message"), [
    (["--student", "not-an-email"], None, "Invalid value for '--student': 'not-an-email' is not an email address"),
    (["--student", "İ" * 200 + "@example.org"], None, "at most 254 are allowed"),
    (["--port", "99999"], None, "Invalid value for '--port': 99999 is not in the range 1<=x<=65535"),
    (["--port", "0"], None, "Invalid value for '--port': 0 is not in the range 1<=x<=65535"),
    (["--timeout", "nan"], "> help\n", "Invalid value for '--timeout': must be a number of seconds between 0 and 3600"),
    (["--timeout", "inf"], "> help\n", "Invalid value for '--timeout': must be a number of seconds between 0 and 3600"),
    (["--timeout", "-1"], "> help\n", "Invalid value for '--timeout': must be a number of seconds between 0 and 3600"),
    (["--workdir", "{file}/work"], None, "cannot use {file}/work as the work directory (Not a directory)"),
    (["--workdir", "{file}"], None, "Invalid value for '--workdir': Directory '{file}' is a file."),
    ([], b"> help\n< \xff\xfe oops\n", "the script {script} is not UTF-8 text (byte 9); save it as UTF-8"),
    ([], "> " + "x" * 20_001 + "\n", "script line 1: not sent: String should have at most 20000 characters"),
    ([], "> help\u0000\n", "script line 1: not sent: must not contain a NUL character"),
    ([], "$ echo 'oops\n", "script line 1: cannot run `echo 'oops`: No closing quotation"),
])
def test_bad_input_is_one_line_and_exit_1(app: Flask, database_url: str, tmp_path: Path, args: list[str],
                                          script: str | bytes | None, message: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    path = _script(tmp_path, script) if script is not None else None
    args = [arg.format(file=a_file) for arg in args] + (["--script", path] if path else [])
    result = _chat(database_url, tmp_path, *args)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and message.format(file=a_file, script=path) in lines[0], result.stderr


def test_an_overlong_or_unsplittable_line_in_the_console_is_refused_and_the_chat_goes_on(
        app: Flask, database_url: str, tmp_path: Path) -> None:
    stdin = "x" * 20_001 + "\n$ echo 'oops\nhelp\n"
    result = _chat(database_url, tmp_path, "--student", "long@example.com", stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "not sent: String should have at most 20000 characters", "cannot run `echo 'oops`: No closing quotation"]
    assert "Commands:" in result.stdout and "Traceback" not in result.stderr
