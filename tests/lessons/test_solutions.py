"""./manage.py lessons test: every shipped lesson passes its solution, and a broken one fails in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.lessons.catalog import lesson_files, load_catalog
from app.settings import DEFAULT_LESSONS_DIR, PROJECT_ROOT

SHIPPED = [path.stem for path in lesson_files(DEFAULT_LESSONS_DIR)]


def lessons_test(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`manage.py lessons test ARGS` as an author runs it; nothing of this machine's settings comes in."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    command = [sys.executable, "manage.py", "lessons", "test", *args]
    if prelude:  # Python run first in the same process, e.g. to take a module away
        command = [sys.executable, "-c", f"{prelude}\nimport runpy, sys\nsys.argv = {['manage.py', 'lessons', 'test', *args]!r}\n"
                   "runpy.run_path('manage.py', run_name='__main__')"]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def one_failure_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def lessons_copy(tmp_path: Path, *lesson_ids: str) -> Path:
    """A lessons directory holding these shipped lessons with their solutions (and templates)."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    for lesson_id in lesson_ids:
        for path in DEFAULT_LESSONS_DIR.glob(f"{lesson_id}.*"):
            shutil.copy(path, folder)
        template = DEFAULT_LESSONS_DIR / f"{lesson_id}-template"
        if template.is_dir():
            shutil.copytree(template, folder / template.name)
    return folder


def test_the_shipped_lessons_are_found() -> None:
    assert {"git-basics", "zulip-basics", "github-basics"} <= set(SHIPPED)


@pytest.mark.parametrize("lesson_id", SHIPPED)
def test_shipped_lesson_passes_its_solution_each_quiz_refusing_a_wrong_answer_first(lesson_id: str) -> None:
    lesson = load_catalog(DEFAULT_LESSONS_DIR).get(lesson_id)
    assert lesson is not None

    result = lessons_test(lesson_id, "--dir", str(DEFAULT_LESSONS_DIR))

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr == ""
    *steps, summary = result.stdout.splitlines()
    total = len(lesson.steps)
    for number, (step, line) in enumerate(zip(lesson.steps, steps, strict=True), start=1):
        assert line.startswith(f"{lesson_id}: step {number}/{total} {step.id} passed (+{step.points}, ")
        assert line.endswith(", a wrong answer refused first)") == step.check.needs_answer, line
    quizzes = sum(step.check.needs_answer for step in lesson.steps)
    assert summary.startswith(f"{lesson_id}: passed: {total} steps, {lesson.max_points} of {lesson.max_points} points, "
                              f"{quizzes} quiz")


def test_a_wrong_expectation_names_the_lesson_the_step_and_the_line(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "git-basics")
    solution = folder / "git-basics.solution.chat"
    lines = solution.read_text().splitlines()
    number = lines.index("< Step 4 passed (+15)") + 1
    lines[number - 1] = "< Step 4 passed (+99)"
    solution.write_text("\n".join(lines) + "\n")

    result = lessons_test("--dir", str(folder), "--timeout", "1")

    line = one_failure_line(result)
    assert line.startswith(f"git-basics: FAILED at step 5 of 7 (merge): solution line {number}: expected a reply "
                           "containing 'Step 4 passed (+99)' within 1 s; got: ✅ Step 2 passed (+10). Points: 30. ")
    assert "| Got your push. ✅ Step 3 passed (+15). Points: 45. ✅ Step 4 passed (+15). Points: 60." in line
    assert "git-basics: step 4/7 feature-file passed (+15, hook)" in result.stdout  # the progress up to there


def test_a_lesson_changed_under_its_solution_fails_at_the_changed_step(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "git-basics")
    lesson = folder / "git-basics.yaml"
    lesson.write_text(lesson.read_text().replace('accept: ["git log", "log"]', 'accept: ["git log --oneline"]'))

    line = one_failure_line(lessons_test("git-basics", "--dir", str(folder), "--timeout", "1"))

    assert line.startswith("git-basics: FAILED at step 2 of 7 (quiz-log): solution line ")
    assert "expected a reply containing 'Step 2 passed (+10)' within 1 s; got: Not right, try again." in line


def test_a_solution_that_stops_early_fails_with_the_points_it_reached(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "git-basics")
    solution = folder / "git-basics.solution.chat"
    lines = solution.read_text().splitlines()
    solution.write_text("\n".join(lines[: lines.index("< Step 2 passed (+10)") + 1]) + "\n")

    assert one_failure_line(lessons_test("--dir", str(folder))) == (
        "git-basics: FAILED at step 3 of 7 (feature-branch): the solution ended with the lesson active, 30 of 100 points")


@pytest.mark.parametrize(("instruction", "reason"), [
    ("$ git push origin no-such-branch", "command failed with exit code 1: git push origin no-such-branch (error: "),
    ("@ github merge", "no platform 'github' in this lesson's test (here: none)"),
    ("> start", "expected a reply containing 'this never comes'"),
    ("% what is this", "start the line with >, <, $, @ or #"),
    ('$ echo "unclosed', "cannot run `echo \"unclosed`: No closing quotation"),
], ids=["failing-command", "foreign-platform", "missing-reply", "unknown-marker", "unclosed-quote"])
def test_a_broken_solution_line_is_named(tmp_path: Path, instruction: str, reason: str) -> None:
    folder = lessons_copy(tmp_path, "git-basics")
    solution = folder / "git-basics.solution.chat"
    lines = solution.read_text().splitlines()
    at = lines.index("< Step 1 passed (+20)") + 1
    solution.write_text("\n".join([*lines[:at], instruction, "< this never comes", *lines[at:]]) + "\n")

    line = one_failure_line(lessons_test("--dir", str(folder), "--timeout", "1"))

    assert line.startswith("git-basics: FAILED at step 2 of 7 (quiz-log): solution line ")
    assert reason in line


def test_a_lesson_without_a_solution_fails_and_the_others_still_run(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "git-basics")
    lesson = (folder / "git-basics.yaml").read_text()
    (folder / "git-basics-copy.yaml").write_text(lesson.replace("id: git-basics", "id: git-basics-copy"))
    (tmp_path / "elsewhere").mkdir()

    result = lessons_test("--dir", str(tmp_path / "elsewhere" / ".." / folder.name))  # a `..` in a path is just a path

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        'git-basics-copy: FAILED: no solution: write git-basics-copy.solution.chat beside git-basics-copy.yaml '
        '(README, "Lesson authoring")',
        "1 of 2 lessons failed: git-basics-copy"]
    assert "git-basics: passed: 7 steps, 100 of 100 points" in result.stdout


def test_a_github_lesson_without_its_template_or_with_a_link_in_it_fails_in_one_line(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "github-basics")
    shutil.rmtree(folder / "github-basics-template")
    assert one_failure_line(lessons_test("--dir", str(folder))) == (
        "github-basics: FAILED: no template: make github-basics-template/ beside the lesson with the files of the "
        "organization's template repository (README, GitHub)")

    shutil.copytree(DEFAULT_LESSONS_DIR / "github-basics-template", folder / "github-basics-template")
    (folder / "github-basics-template" / "secrets.txt").symlink_to("/etc/passwd")
    assert one_failure_line(lessons_test("--dir", str(folder))) == (
        "github-basics: FAILED: github-basics-template/secrets.txt is a symbolic link; put the file itself in the template")


def test_platform_actions_that_cannot_be_done_are_named(tmp_path: Path) -> None:
    folder = lessons_copy(tmp_path, "github-basics")
    steps = len(load_catalog(folder).lessons["github-basics"].steps)
    solution = folder / "github-basics.solution.chat"
    text = solution.read_text()
    cases = {
        "@ github branch": "usage: @ github branch NAME [START]",
        "@ github fly away": "no action 'fly' for @ github (known: accept, branch, commit, edit, issue, merge, pr, reply, user)",
        "@ github edit main README.md 'no such text' x": "README.md on main does not contain 'no such text'",
        "@ github branch add-notes": "GitHub answered 422 to the branch add-notes",
    }
    for action, reason in cases.items():
        solution.write_text(text.replace("< Step 2 passed (+10)\n", f"< Step 2 passed (+10)\n{action}\n"))
        line = one_failure_line(lessons_test("--dir", str(folder)))
        assert line.startswith(f"github-basics: FAILED at step 3 of {steps} (commit-notes): solution line ")
        assert reason in line, line


def test_a_platform_that_cannot_start_is_one_line() -> None:
    result = lessons_test("zulip-basics", "--dir", str(DEFAULT_LESSONS_DIR),
                          prelude="import sys; sys.modules['tests.zulip_server.server'] = None")
    assert one_failure_line(result).startswith(
        "zulip-basics: FAILED: the Zulip test server (tests/zulip_server) cannot be started here: ")


@pytest.mark.parametrize(("args", "error"), [
    (["nope"], "Error: no lesson 'nope'; known: "),
    (["../git-basics"], "Error: no lesson '../git-basics'; known: "),
    (["git-basics/../../etc/passwd"], "Error: no lesson 'git-basics/../../etc/passwd'; known: "),
    (["--dir", "app/lessons/files/../../no-such-dir"], "Error: Invalid value for '--dir': Directory "),
    (["--dir", "app/lessons/files/git-basics.yaml"], "Error: Invalid value for '--dir': Directory "),
    (["--dir", "app/lessons/files/../../../migrations"], "Error: no lesson files in app/lessons/files/../../../migrations"),
    (["--timeout", "0"], "Error: Invalid value for '--timeout': must be a number of seconds above 0"),
    (["--timeout", "nan"], "Error: Invalid value for '--timeout': must be a number of seconds above 0"),
], ids=["unknown", "dotdot-id", "path-id", "missing-dir", "file-as-dir", "dotdot-dir-without-lessons", "zero", "nan"])
def test_bad_arguments_are_one_line(args: list[str], error: str) -> None:
    assert one_failure_line(lessons_test(*args)).startswith(error)
