"""Lesson files: every mistake reported with file, step and reason; invalid lessons are refused."""

from __future__ import annotations

import resource
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
    shown = _manage("lessons", "show", "Git-Basics.", "--lang", "ru")
    assert shown.returncode == 0 and "Интерактивный урок по Git" in shown.stdout and "7. quiz-status" in shown.stdout
    missing = _manage("lessons", "show", "nope")
    assert missing.returncode != 0 and "no lesson 'nope'" in missing.stderr


GOOD = THREE_MISTAKES.replace("git.comit_exists", "git.commit_exists").replace('{ru: "Два"}', '{ru: "Два", en: "Two"}') \
    .replace("points: -5", "points: 10").replace('["x"]', '["git log"]')


def _bomb(levels: int) -> str:
    """A merge-key "billion laughs": each level merges the one below nine times."""
    lines = ["l0: &l0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}"]
    for level in range(1, levels + 1):
        keys = ", ".join(f"k{n}: *l{level - 1}" for n in range(9))
        lines.append(f"l{level}: &l{level} {{{keys}}}")
    lines.append(f"id: broken\nsteps: [*l{levels}, *l{levels}]")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int) -> str:
    lines = ["m0: &m0 {a: 1}"]
    for level in range(1, levels + 1):
        merges = ", ".join(f"*m{level - 1}" for _ in range(9))
        lines.append(f"m{level}: &m{level} {{<<: [{merges}], x{level}: 1}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("content", "where", "reason"), [
    (GOOD.encode("utf-16"), "file", "is UTF-16 text; save it as UTF-8"),
    (GOOD.encode("utf-16-be"), "file", "contains NUL bytes"),
    ("id: broken\ntitle: é\n".encode("latin-1"), "line 2", "is not UTF-8 text"),
    (bytes(range(256)) * 4, "file", "contains NUL bytes"),
    (bytes(range(1, 256)) * 4, "line 2", "is not UTF-8 text"),
    (b"id: x\x01\x02", "file", "is not valid YAML: unacceptable character #x0001"),
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "file", "contains NUL bytes"),
    (b"", "file", "must be a YAML mapping"),
    (b"x" * 300_000, "file", "is larger than 256 KiB"),
    (_bomb(5).encode(), "file", "expands to more than 20000 values"),
    (_merge_bomb(5).encode(), "file", "expands to more than 20000 values"),
    (("a: &a [" + ", ".join(["*a"] * 5) + "]").encode(), "file", "refers to the node that contains it"),
    (("x: &x 1\ny: [" + ", ".join(["*x"] * 150) + "]").encode(), "line 2", "more than 100 aliases"),
    (b"[" * 5000 + b"]" * 5000, "file", "nested too deeply"),
])
def test_files_that_are_not_lessons_are_reported_not_crashed_on(tmp_path: Path, content: bytes, where: str,
                                                                 reason: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    lessons, errors = validate_path(path)
    assert lessons == []
    assert len(errors) == 1, [str(error) for error in errors]
    assert errors[0].where == where and reason in errors[0].reason, str(errors[0])


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))  # a loader without bounds fails here, not the host


def test_a_yaml_bomb_is_refused_quickly_in_little_memory(tmp_path: Path) -> None:
    """Unbounded, the 8-level merge bomb took 44 s and 868 MB here; the 10-level alias bomb far more."""
    code = ("import resource, sys, time; from pathlib import Path; from app.lessons.catalog import validate_path\n"
            "start = time.monotonic(); _, errors = validate_path(Path(sys.argv[1]))\n"
            "print(time.monotonic() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, errors[0].reason)")
    baseline = subprocess.run([sys.executable, "-c", code, str(_write(tmp_path, "small.yaml", "id: small\n"))],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    baseline_mb = int(baseline.stdout.split(" ", 2)[1])  # the interpreter and the app's imports
    for name, text in (("bomb.yaml", _bomb(10)), ("merge.yaml", _merge_bomb(8))):
        path = _write(tmp_path, name, text)
        result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=30, preexec_fn=_limit_memory)
        seconds, peak_mb, reason = result.stdout.split(" ", 2)
        assert "expands to more than" in reason, result.stdout + result.stderr
        assert float(seconds) < 1.0 and int(peak_mb) - baseline_mb < 50, (name, seconds, peak_mb, baseline_mb)


@pytest.mark.parametrize(("change", "reason"), [
    (("max_points: 30", 'max_points: "30"'), "lesson: max_points Input should be a valid integer"),
    (("    points: 10\n  - id: two", '    points: "10"\n  - id: two'), "step 1 'one': points Input should be a valid integer"),
    (("    points: 10\n  - id: two", "    points: 10.0\n  - id: two"), "step 1 'one': points Input should be a valid integer"),
    (("    points: 10\n  - id: two", "    points: true\n  - id: two"), "step 1 'one': points Input should be a valid integer"),
    (("id: broken", "id: ../../x"), "lesson: id String should match pattern"),
    (("id: broken", 'id: "x\\ny"'), "lesson: id 'x\\ny' differs from the file name"),
    (("  - id: one", '  - id: "a\\nb"\n    "new\\nline": 1'), "step 1 'a\\nb': 'new\\nline' is not a known field"),
    (("  - id: one", "  - id: ../../x"), "step 1 '../../x': id String should match pattern"),
    (("{name: feature}", "{name: ../../x}"), "is not a git branch or tag name"),
    (("{branch: main}", "{branch: ../../x}"), "is not a git branch or tag name"),
    (('["git log"]', '["status"]'), "accepted answer 'status' reads as the command 'status'"),
    (('["git log"]', '["Помощь?"]'), "accepted answer 'Помощь?' reads as the command 'help'"),
    (('["git log"]', '["start git-basics"]'), "reads as the command 'start'"),
    (('["git log"]', '["\\u200bstop"]'), "reads as the command 'stop'"),
])
def test_wrong_types_paths_and_command_answers_are_refused(tmp_path: Path, change: tuple[str, str], reason: str) -> None:
    path = _write(tmp_path, "broken.yaml", GOOD.replace(*change))
    lessons, errors = validate_path(path)
    assert lessons == [] and any(reason in str(error) for error in errors), [str(error) for error in errors]
    assert all("\n" not in str(error) for error in errors)


def test_every_problem_of_a_file_is_reported_in_one_round(tmp_path: Path) -> None:
    text = (GOOD.replace("id: broken", "id: other").replace("    points: 10\n  - id: two", '    points: "10"\n  - id: one')
            .replace('["git log"]', '["status"]').replace("platform: git", "platform: git\ncolour: red"))
    path = _write(tmp_path, "broken.yaml", text)
    _, errors = validate_path(path)
    lines = [str(error) for error in errors]
    for expected in ("colour is not a known field", "points Input should be a valid integer",
                     "id is used by an earlier step", "reads as the command 'status'", "differs from the file name"):
        assert any(expected in line for line in lines), (expected, lines)


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: "", "Error: the path is empty; give a lesson file or a directory of them"),
    (lambda tmp: "/dev/null", "/dev/null: path: is neither a lesson file nor a directory of them"),
    (lambda tmp: str(tmp), "has no lesson files (*.yaml)"),
    (lambda tmp: str(tmp / "missing"), "missing: path: does not exist"),
])
def test_validate_refuses_paths_without_lessons(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    result = _manage("lessons", "validate", make(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "OK" not in result.stdout


def test_a_directory_named_like_a_lesson_is_an_error_for_validate_and_the_core(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "latin1.yaml").write_bytes("id: latin1\ntitle: é\n".encode("latin-1"))
    result = _manage("lessons", "validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'folder.yaml'}: file: is a directory, not a lesson file" in result.stderr
    assert f"{tmp_path / 'latin1.yaml'}: line 2: is not UTF-8 text" in result.stderr
    with pytest.raises(InvalidLessons) as raised:
        create_app(make_settings(database_url, tmp_path / "git", lessons_dir=tmp_path))
    assert len(raised.value.errors) == 2
