"""./manage.py runs …: who is on which step of which lesson; stop or restart a student's run."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from app import current
from app.cli.errors import one_line_errors, operator
from app.courses.service import get_course
from app.db import db
from app.lessons.catalog import Catalog
from app.runs import service
from app.runs.models import LessonRun, RunStatus
from app.runs.workspace import PlatformWorkspace

runs_cli = AppGroup("runs", help="Students' lesson runs: list them, stop or restart one.")


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def runs_table(runs: list[LessonRun], catalog: Catalog, *, with_student: bool = True) -> Table:
    """One row per run: where it is, how it ended, and when (times in UTC)."""
    columns = ["run", *(["student"] if with_student else []), "lesson", "step", "status", "points", "started (UTC)",
               "finished (UTC)"]
    table = Table(*columns)
    for run in runs:
        student = [run.student.email] if with_student else []
        table.add_row(str(run.id), *student, run.lesson_id, service.step_label(run, catalog), run.status.value,
                      str(run.points), when(run.started_at), when(run.finished_at))
    return table


@runs_cli.command("list")
@click.option("--course", "alias", default=None, help="Only the students of this course (courses list).")
@click.option("--lesson", "lesson_id", default=None, help="Only this lesson (lessons list).")
@click.option("--status", type=click.Choice([status.value for status in RunStatus]), default=None, help="Only these.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@one_line_errors
def list_command(alias: str | None, lesson_id: str | None, status: str | None, limit: int) -> None:
    """List runs, newest first."""
    course = get_course(alias) if alias else None
    runs = service.list_runs(course, lesson_id, RunStatus(status) if status else None, limit)
    if not runs:
        click.echo("no runs match")
        return
    Console(width=200).print(runs_table(runs, current.catalog()))


@runs_cli.command("stop")
@click.argument("run_id", metavar="RUN", type=int)
@one_line_errors
def stop_command(run_id: int) -> None:
    """End the active run RUN as stopped (its points stay on record); the student is told in chat."""
    run = service.stop_run(run_id, operator(), current.catalog(), current.settings())
    db.session.commit()
    click.echo(f"run {run.id} ({run.student.email}, {run.lesson_id}) stopped at step "
               f"{service.step_label(run, current.catalog())} with {run.points} points; the student is told")


@runs_cli.command("restart")
@click.argument("run_id", metavar="RUN", type=int)
@one_line_errors
def restart_command(run_id: int) -> None:
    """Start RUN's lesson again from step 1 for its student; the student is told in chat.

    The old run stays as history: if it was active it ends as stopped; a completed run keeps
    its grade. The new run is a run of its own (new id, and a new repository for Git lessons).
    """
    settings = current.settings()
    run = service.restart_run(run_id, operator(), current.catalog(), PlatformWorkspace(settings), settings)
    db.session.commit()
    click.echo(f"run {run_id} restarted: {run.student.email} begins {run.lesson_id} again as run {run.id}; "
               f"the student is told")
