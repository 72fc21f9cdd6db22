"""Every manage.py command that needs the database: an unreachable one is one line naming it, and exit 1.

(``lessons …``, ``logs …`` and ``zulip check`` do not use the database.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from tests.conftest import SECRETS
from tests.pg import empty_database, free_port

COMMANDS = [
    ["outbox", "list"], ["chat"], ["courses", "list"], ["courses", "add", "git", "Git course"], ["courses", "sync"],
    ["assignments", "list"], ["assignments", "create", "--course", "git", "--lesson", "git-basics"], ["google", "auth"],
    ["google", "status"], ["admins", "add", "a@example.com"], ["admins", "list"], ["grades", "list"], ["grades", "sync"],
    ["grades", "export", "--sheet", "x"], ["db", "upgrade"], ["db", "current"],
    ["admins", "remove", "a@example.com"], ["courses", "rename", "git", "git2"], ["courses", "remove", "git"],
    ["students", "list"], ["students", "show", "a@example.com"], ["runs", "list"], ["runs", "stop", "1"],
    ["runs", "restart", "1"], ["grades", "regrade", "1"],
]


def _manage(tmp_path: Path, database_url: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    (tmp_path / "logs").mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_") and key != "DATABASE_URL"}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_LOG_DIR=str(tmp_path / "logs"),
               LESSONBOT_GIT_ROOT=str(tmp_path / "git"), HOME=str(tmp_path))
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_unreachable_database_is_one_line_naming_it(tmp_path: Path, args: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = _manage(tmp_path, f"postgresql://lessonbot:hunter2-secret@127.0.0.1:{port}/lessonbot", args)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Database error: cannot use the database at 127.0.0.1:{port}/lessonbot (")
    assert "hunter2" not in result.stderr + result.stdout


def test_an_unknown_database_host_is_named(tmp_path: Path) -> None:
    result = _manage(tmp_path, "postgresql://lessonbot@db.invalid/lessonbot", ["outbox", "list"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Database error: cannot use the database at db.invalid:5432/lessonbot (")


@pytest.fixture(scope="module")
def unmigrated(database_url: str) -> str:
    """A reachable PostgreSQL database without Lessonbot's tables, as on a new machine before `db upgrade`."""
    return empty_database(database_url, "lessonbot_unmigrated")


NEED_TABLES = [args for args in COMMANDS if args[0] != "db"]


@pytest.mark.parametrize("args", NEED_TABLES, ids=" ".join)
def test_a_database_without_tables_is_one_line_saying_upgrade(tmp_path: Path, unmigrated: str, args: list[str]) -> None:
    result = _manage(tmp_path, unmigrated, args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = (result.stderr.strip() or result.stdout.strip()).splitlines()
    assert len(line) == 1 and "run ./manage.py db upgrade" in line[0], result.stderr


def test_a_restore_from_drive_into_a_bare_database_says_what_to_do_first(tmp_path: Path, unmigrated: str) -> None:
    """Restoring from Drive needs the Google authorization, which the lost database held (README, Restore drill)."""
    identity = tmp_path / "key.txt"
    identity.write_text("AGE-SECRET-KEY-1\n")
    result = _manage(tmp_path, unmigrated, ["backup", "restore", "1AbCdriveFileId", "--identity", str(identity)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: restoring from Drive needs the Google authorization, and this database has no Lessonbot tables: run "
        "./manage.py db upgrade and ./manage.py google auth here first, then restore into an empty database with "
        "--database (README, Restore drill)"]
