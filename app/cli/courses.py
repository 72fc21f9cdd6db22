"""./manage.py courses … and assignments …: Classroom courses under aliases, rosters, lessons' courseWork."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from app import current
from app.cli.errors import one_line_errors
from app.courses import service
from app.courses.models import Assignment, Course
from app.db import db
from app.settings import Settings

courses_cli = AppGroup("courses", help="Classroom courses under short aliases, and their rosters.")
assignments_cli = AppGroup("assignments", help="The lessons' assignments (courseWork) in Classroom.")


@courses_cli.command("add")
@click.argument("alias")
@click.argument("name")
@one_line_errors
def add_command(alias: str, name: str) -> None:
    """Find the Classroom course called NAME and remember it as ALIAS."""
    course = service.add_course(current.settings(), alias, name)
    db.session.commit()
    click.echo(f"{course.alias}: “{course.classroom_name}” (Classroom id {course.classroom_id})")


@courses_cli.command("list")
def list_command() -> None:
    """List the courses with their roster sizes."""
    table = Table("alias", "Classroom name", "Classroom id", "students")
    for course, students in service.list_courses():
        table.add_row(course.alias, course.classroom_name, course.classroom_id or "", str(students))
    Console().print(table)


@courses_cli.command("rename")
@click.argument("old")
@click.argument("new")
@one_line_errors
def rename_command(old: str, new: str) -> None:
    """Call the course OLD by the alias NEW from now on (roster, assignments and grades stay with it)."""
    course = service.rename_course(old, new)
    db.session.commit()
    click.echo(f"{old} is now {course.alias} (“{course.classroom_name}”)")


@courses_cli.command("remove")
@click.argument("alias")
@click.option("--force", is_flag=True, help="Remove it even though its students have runs or grades not yet delivered.")
@one_line_errors
def remove_command(alias: str, force: bool) -> None:
    """Forget the course ALIAS: its roster and assignment records go; students, runs and grades stay.

    Nothing changes in Classroom. Grades not yet delivered then go only to the students' other
    courses (or wait for one); refused without --force while there are any, or runs.
    """
    use = service.remove_course(alias, force)
    db.session.commit()
    click.echo(f"removed {alias} (roster of {use.students}); kept {use.runs} runs and {use.grades_waiting} waiting grades")


def sync_courses(settings: Settings, alias: str | None) -> dict[str, int]:
    """Import each course's roster (or one course's); {alias: students}."""
    counts = {}
    for course in service.courses_for(settings, alias):
        counts[course.alias] = service.sync_roster(settings, course)
        db.session.commit()
    return counts


@courses_cli.command("sync")
@click.argument("alias", required=False)
@one_line_errors
def sync_command(alias: str | None) -> None:
    """Import the students (names, emails, Classroom ids) of every course, or of ALIAS."""
    for name, count in sync_courses(current.settings(), alias).items():
        click.echo(f"{name}: {count} students")


@assignments_cli.command("create")
@click.option("--course", "alias", required=True, help="The course alias (courses list).")
@click.option("--lesson", "lesson_id", required=True, help="The lesson id (lessons list).")
@click.option("--title", default=None, help="Default: «Интерактивный урок по <Platform>».")
@one_line_errors
def create_command(alias: str, lesson_id: str, title: str | None) -> None:
    """Create the lesson's assignment in the course, so that Lessonbot may grade it."""
    lesson = current.catalog().get(lesson_id)
    if lesson is None:
        raise click.ClickException(f"no lesson {lesson_id!r} (see ./manage.py lessons list)")
    assignment = service.create_assignment(current.settings(), service.get_course(alias), lesson, title)
    db.session.commit()
    click.echo(f"created “{assignment.title}” in {alias} (courseWork {assignment.coursework_id}, {lesson.max_points} points)")


@assignments_cli.command("list")
@click.option("--course", "alias", default=None, help="Only this course.")
@one_line_errors
def assignments_list_command(alias: str | None) -> None:
    """Show each lesson's assignment in Classroom and whether Lessonbot may grade it."""
    table = Table("course", "lesson", "title", "courseWork", "associatedWithDeveloper", "note")
    lessons = list(current.catalog())
    courses = service.courses_for(current.settings(), alias)
    for course in courses:
        for work in service.classroom_assignments(current.settings(), course, lessons):
            lesson_id = work.lesson.id if work.lesson else _recorded_lesson(course, work.coursework_id)
            note = "" if work.associated else service.not_ours_reason(course, lesson_id, work.title)
            table.add_row(course.alias, lesson_id, work.title, work.coursework_id, str(work.associated).lower(), note)
    if not table.row_count:
        click.echo(f"no lesson has an assignment in {', '.join(c.alias for c in courses)} yet: "
                   f"./manage.py assignments create --course ALIAS --lesson LESSON")
        return
    Console(width=200).print(table)


def _recorded_lesson(course: Course, coursework_id: str) -> str:
    query = sa.select(Assignment.lesson_id).where(Assignment.course_id == course.id, Assignment.coursework_id == coursework_id)
    return str(db.session.scalar(query) or "?")
