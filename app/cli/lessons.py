"""./manage.py lessons …: validate, list, show and test lesson files."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from app.lessons.catalog import lesson_files, validate_path
from app.lessons.commands import normalize_word
from app.lessons.schema import Lesson
from app.settings import DEFAULT_LESSONS_DIR

MAX_TIMEOUT_SECONDS = 600.0

console = Console()


def _default_dir() -> Path:
    return Path(os.environ.get("LESSONBOT_LESSONS_DIR") or DEFAULT_LESSONS_DIR)


lessons_cli = click.Group("lessons", help="Validate, list, show and test lesson files.")


def validate(path: Path, *, require_lessons: bool = False) -> tuple[list[Lesson], list[str]]:
    """Every lesson under path and every mistake, as printable lines."""
    lessons, errors = validate_path(path, require_lessons=require_lessons)
    return lessons, [str(error) for error in errors]


@lessons_cli.command("validate")
@click.argument("path", required=False, type=click.Path(path_type=str))
def validate_command(path: str | None) -> None:
    """Check lesson files (a file or a directory; default: the configured lessons directory).

    Prints every mistake with file, step and reason, and exits 1 if there is any (or no lesson at all).
    """
    if path == "":
        raise click.ClickException("the path is empty; give a lesson file or a directory of them")
    target = Path(path) if path is not None else _default_dir()
    lessons, errors = validate(target, require_lessons=True)
    for line in errors:
        click.echo(line, err=True)
    if errors:
        click.echo(f"{len(errors)} problem(s) in {target}", err=True)
        sys.exit(1)
    click.echo(f"OK: {len(lessons)} lesson(s) in {target}: {', '.join(lesson.id for lesson in lessons)}")


def _load(path: Path) -> list[Lesson]:
    lessons, errors = validate(path)
    if errors:
        raise click.ClickException(f"{len(errors)} problem(s) in the lesson files; run ./manage.py lessons validate")
    return lessons


@lessons_cli.command("list")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Lessons directory.")
def list_command(directory: Path | None) -> None:
    """List the lessons: id, platform, title, steps and points."""
    table = Table("id", "platform", "title (en)", "steps", "points")
    for lesson in _load(directory or _default_dir()):
        table.add_row(lesson.id, lesson.platform, lesson.title.en, str(len(lesson.steps)), str(lesson.max_points))
    console.print(table)


@lessons_cli.command("show")
@click.argument("lesson_id")
@click.option("--lang", type=click.Choice(["ru", "en"]), default="en", show_default=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Lessons directory.")
def show_command(lesson_id: str, lang: str, directory: Path | None) -> None:
    """Show one lesson's steps as the student sees them."""
    lessons = {lesson.id: lesson for lesson in _load(directory or _default_dir())}
    lesson = lessons.get(normalize_word(lesson_id))
    if lesson is None:
        raise click.ClickException(f"no lesson {lesson_id!r}; known: {', '.join(sorted(lessons))}")
    console.print(f"[bold]{lesson.title.get(lang)}[/bold] ({lesson.id}, platform {lesson.platform}, {lesson.max_points} points)")
    for number, step in enumerate(lesson.steps, start=1):
        console.print(f"\n[bold]{number}. {step.id}[/bold] — {step.check.type}, {step.points} points")
        console.print(step.say.get(lang), markup=False)
        if step.hint:
            console.print(f"hint: {step.hint.get(lang)}", markup=False, style="dim")


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise click.BadParameter(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}, not {value:g}")
    return value


@lessons_cli.command("test")
@click.argument("lesson_id", required=False)
@click.option("--dir", "directory", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Lessons directory (default: the configured one).")
@click.option("--timeout", default=10.0, show_default=True, callback=_seconds,
              help="Seconds to wait for each expected reply.")
@click.option("--verbose", "-v", is_flag=True, help="Show the chat, the platform actions and the core's log as they happen.")
def test_command(lesson_id: str | None, directory: Path | None, timeout: float, verbose: bool) -> None:
    """Take each lesson (or LESSON_ID) through its solution against local platforms.

    The solution is `<id>.solution.chat` beside the lesson file (README, "Lesson authoring").
    Every lesson runs alone on a fresh SQLite database, with hosted git, the Zulip test server
    or the GitHub test server as it needs; each quiz gets a wrong answer first. One line per
    step as it passes, one per lesson; exit 1 if any lesson failed.
    """
    from app.cli.selftest.runner import run_solutions

    folder = directory or _default_dir()
    lessons = {lesson.id: lesson for lesson in _load(folder)}
    if not lessons:
        raise click.ClickException(f"no lesson files in {folder}")
    if lesson_id is not None:
        wanted = normalize_word(lesson_id)
        if wanted not in lessons:
            raise click.ClickException(f"no lesson {lesson_id!r}; known: {', '.join(sorted(lessons))}")
        lessons = {wanted: lessons[wanted]}
    files = {file.stem: file for file in lesson_files(folder)}
    reports = run_solutions([(lesson, files[lesson.id]) for lesson in lessons.values()], timeout, verbose=verbose)
    failed = [report.lesson_id for report in reports if not report.passed]
    if len(reports) > 1:
        click.echo(f"{len(failed)} of {len(reports)} lessons failed: {', '.join(failed)}" if failed
                   else f"all {len(reports)} lessons passed", err=bool(failed))
    if failed:
        sys.exit(1)
