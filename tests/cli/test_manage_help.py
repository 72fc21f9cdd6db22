"""./manage.py help works on a fresh clone: no settings, no .env, started by the system python3."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.cli import command_groups
from app.settings import PROJECT_ROOT
from tests.test_settings import _clean_env

GROUPS = sorted([command.name or "" for command in command_groups()] + ["db"])


def _manage(tmp_path: Path, *args: str, python: str = "/usr/bin/python3") -> subprocess.CompletedProcess[str]:
    """Runs manage.py as a newcomer would: the system interpreter, an empty env file, no LESSONBOT_* variables."""
    return subprocess.run([python, str(PROJECT_ROOT / "manage.py"), *args], cwd=tmp_path, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=60)


def test_top_level_help_lists_every_group_without_settings_or_flask_noise(tmp_path: Path) -> None:
    result = _manage(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].strip().splitlines()]
    assert listed == GROUPS
    for noise in ("routes", "shell", "--app", "--env-file", "--debug"):
        assert noise not in result.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_explains_itself_without_settings(tmp_path: Path, group: str) -> None:
    result = _manage(tmp_path, group, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: manage.py {group} ")
    assert result.stderr == ""


def test_a_command_that_needs_settings_still_names_the_missing_ones(tmp_path: Path) -> None:
    result = _manage(tmp_path, "outbox", "list")
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: LESSONBOT_SECRET_KEY is missing;")
    assert "Traceback" not in result.stderr


def test_lessons_validate_needs_no_settings(tmp_path: Path) -> None:
    result = _manage(tmp_path, "lessons", "validate")
    assert result.returncode == 0, result.stderr
    assert "git-basics" in result.stdout


def test_without_the_virtualenv_it_says_how_to_create_it(tmp_path: Path) -> None:
    """A clone before `make demo`: no .venv, so the system python3 lacks Flask: one line, exit 1."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(PROJECT_ROOT), str(clone)], check=True)
    (clone / "manage.py").write_text((PROJECT_ROOT / "manage.py").read_text())  # the working copy's, committed or not
    result = subprocess.run(["/usr/bin/python3", "-I", str(clone / "manage.py"), "--help"], cwd=clone,
                            env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "make demo" in result.stderr and "Traceback" not in result.stderr
