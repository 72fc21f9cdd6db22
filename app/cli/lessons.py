"""./manage.py lessons …: validate, list and show lesson files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from app.lessons.catalog import validate_path
from app.lessons.commands import normalize_word
from app.lessons.schema import Lesson
from app.settings import DEFAULT_LESSONS_DIR

console = Console()


def _default_dir() -> Path:
    return Path(os.environ.get("LESSONBOT_LESSONS_DIR") or DEFAULT_LESSONS_DIR)


lessons_cli = click.Group("lessons", help="Validate, list and show lesson files.")


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
