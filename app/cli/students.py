"""./manage.py students …: find a student; their runs, linked account and grade deliveries."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from app import current
from app.cli.errors import one_line_errors
from app.cli.runs import runs_table, when
from app.courses.service import get_course
from app.grading.service import grades_of
from app.runs.service import runs_of
from app.students import service

students_cli = AppGroup("students", help="Students who talked to the bot: find one, see their runs and grades.")


@students_cli.command("list")
@click.option("--course", "alias", default=None, help="Only the students on this course's roster (courses sync).")
@click.option("--search", default=None, help="Only emails or names that contain this text (any case).")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@one_line_errors
def list_command(alias: str | None, search: str | None, limit: int) -> None:
    """List students by email."""
    students = service.search_students(get_course(alias) if alias else None, search, limit)
    if not students:
        click.echo("no students match")
        return
    table = Table("email", "name", "Zulip id", "language", "first seen (UTC)")
    for student in students:
        table.add_row(student.email, student.full_name, str(student.zulip_user_id or ""), student.language,
                      when(student.created_at))
    Console(width=200).print(table)


@students_cli.command("show")
@click.argument("email")
@one_line_errors
def show_command(email: str) -> None:
    """Show one student: courses, linked Google account, runs (step, status, times) and grade deliveries."""
    student = service.find_student(email)
    link = service.google_link(student)
    courses = ", ".join(course.alias for course in service.courses_of(student)) or "none (not on a synced roster)"
    console = Console(width=200)
    console.print(f"{student.email} — {student.full_name or 'no name'} (Zulip id {student.zulip_user_id or 'none'}, "
                  f"language {student.language}, first seen {when(student.created_at)} UTC)", highlight=False)
    console.print(f"courses: {courses}", highlight=False)
    console.print(f"Google account: {f'{link.google_email} (linked {when(link.linked_at)} UTC)' if link else 'not linked'}",
                  highlight=False)
    runs = runs_of(student)
    console.print(runs_table(runs, current.catalog(), with_student=False) if runs else "runs: none")
    grades = grades_of(student.id)
    if not grades:
        console.print("grade deliveries: none")
        return
    table = Table("item", "kind", "run", "lesson", "points", "status", "attempts", "sent (UTC)", "reason")
    for item in grades:
        table.add_row(str(item.id), item.kind.value, str(item.payload.get("run_id", "")), str(item.payload.get("lesson_id", "")),
                      str(item.payload.get("points", "")), item.status.value, str(item.attempts), when(item.sent_at),
                      item.last_error or "")
    console.print(table)
