"""Lesson files: every mistake reported with file, step and reason; invalid lessons are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.lessons.catalog import InvalidLessons, validate_path
from app.settings import DEFAULT_LESSONS_DIR, PROJECT_ROOT
from tests.conftest import make_settings

THREE_MISTAKES = """\
id: broken
platform: git
title: {ru: "Сломанный урок", en: "Broken lesson"}
max_points: 30
steps:
  - id: one
    say: {ru: "Раз", en: "One"}
    check: {git.comit_exists: {branch: main}}
    points: 10
  - id: two
    say: {ru: "Два"}
    check: {git.branch_exists: {name: feature}}
    points: 10
  - id: three
    say: {ru: "Три", en: "Three"}
    check: {answer: {accept: ["x"]}}
    points: -5
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_three_mistakes_are_all_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", THREE_MISTAKES)
    lessons, errors = validate_path(path)
    assert lessons == []
    lines = [str(error) for error in errors]
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}: step 1 'one': check ") and "unknown check type 'git.comit_exists'" in lines[0]
    assert lines[1] == f"{path}: step 2 'two': say.en is missing"
    assert lines[2].startswith(f"{path}: step 3 'three': points ") and "greater than or equal to 0" in lines[2]


@pytest.mark.parametrize(("change", "reason"), [
    (("max_points: 30", "max_points: 40"), "max_points is 40 but the steps' points add up to 30"),
    (("id: two", "id: one"), "step 2 'one': id is used by an earlier step"),
    (("platform: git", "platform: fax"), "platform 'fax' has no checks"),
    (("{name: feature}", "{name: feature, colour: red}"), "git.branch_exists: colour: Extra inputs are not permitted"),
    (("{name: feature}", "{}"), "git.branch_exists: name: Field required"),
    (("id: broken", "id: other"), "differs from the file name"),
    (("    points: 10\n  - id: two", "    points: 10\n    colour: red\n  - id: two"),
     "step 1 'one': colour is not a known field"),
])
def test_semantic_mistakes(tmp_path: Path, change: tuple[str, str], reason: str) -> None:
    good = THREE_MISTAKES.replace("git.comit_exists", "git.commit_exists").replace('{ru: "Два"}', '{ru: "Два", en: "Two"}')
    good = good.replace("points: -5", "points: 10")
    path = _write(tmp_path, "broken.yaml", good.replace(*change))
    _, errors = validate_path(path)
    assert any(reason in str(error) for error in errors), [str(error) for error in errors]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "id: bad\nsteps: [\n  - oops: {\n")
    _, errors = validate_path(path)
    assert len(errors) == 1 and "line" in errors[0].where and "not valid YAML" in errors[0].reason


def test_shipped_lessons_are_valid() -> None:
    lessons, errors = validate_path(DEFAULT_LESSONS_DIR)
    assert errors == []
    git_basics = next(lesson for lesson in lessons if lesson.id == "git-basics")
    assert len(git_basics.steps) >= 6
    assert any(step.check.type == "answer" for step in git_basics.steps)
    assert sum(step.points for step in git_basics.steps) == git_basics.max_points


def test_app_refuses_to_load_an_invalid_lesson(tmp_path: Path, database_url: str) -> None:
    _write(tmp_path, "broken.yaml", THREE_MISTAKES)
    with pytest.raises(InvalidLessons) as raised:
        create_app(make_settings(database_url, tmp_path / "git", lessons_dir=tmp_path))
    assert len(raised.value.errors) == 3 and "lessons validate" in str(raised.value)


def _manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "manage.py"), *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=60)


def test_validate_command_prints_every_error_and_exits_nonzero(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", THREE_MISTAKES)
    result = _manage("lessons", "validate", str(path))
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith(str(path))].__len__() == 3
    assert "3 problem(s)" in result.stderr
    ok = _manage("lessons", "validate")
    assert ok.returncode == 0 and "git-basics" in ok.stdout


def test_list_and_show_commands() -> None:
    listed = _manage("lessons", "list")
    assert listed.returncode == 0 and "git-basics" in listed.stdout and "100" in listed.stdout
    shown = _manage("lessons", "show", "git-basics", "--lang", "ru")
    assert shown.returncode == 0 and "Интерактивный урок по Git" in shown.stdout and "7. quiz-status" in shown.stdout
    missing = _manage("lessons", "show", "nope")
    assert missing.returncode != 0 and "no lesson 'nope'" in missing.stderr
