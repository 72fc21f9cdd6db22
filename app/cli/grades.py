"""./manage.py grades …: what reached Classroom, what waits and why; retry; the gradebook sheet."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app import current
from app.cli.errors import one_line_errors, operator
from app.courses.service import get_course
from app.db import db
from app.grading import delivery, sheets
from app.grading import service as grading_service
from app.grading.service import GRADE_KINDS, list_grades, retry_failed
from app.lessons.catalog import Catalog
from app.outbox.dispatcher import Outcome
from app.outbox.models import OutboxStatus
from app.outbox.service import count_pending
from app.settings import Settings

grades_cli = AppGroup("grades", help="Grades for Google Classroom and the gradebook sheet.")


@grades_cli.command("list")
@click.option("--pending", is_flag=True, help="Only grades still waiting.")
@click.option("--failed", is_flag=True, help="Only grades that could not be written, with the reason.")
@click.option("--limit", default=200, show_default=True)
def list_command(pending: bool, failed: bool, limit: int) -> None:
    """List grades and gradebook rows, newest first."""
    status = OutboxStatus.FAILED if failed else OutboxStatus.PENDING if pending else None
    table = Table("id", "kind", "student", "lesson", "points", "status", "attempts", "reason")
    for item in list_grades(status, limit):
        student = item.payload.get("student_email") or (str(item.student_id) if item.student_id else "")
        table.add_row(str(item.id), item.kind.value, student, str(item.payload.get("lesson_id", "")),
                      str(item.payload.get("points", "")), item.status.value, str(item.attempts), item.last_error or "")
    Console(width=220).print(table)


def sync_grades(settings: Settings, catalog: Catalog, sleep: delivery.Sleep = time.sleep,
                rounds: int = 30) -> delivery.SyncReport:
    """Retry failed grades and deliver every pending one now, with a progress bar."""
    retry_failed()
    db.session.commit()
    total = count_pending(GRADE_KINDS)
    with Progress(transient=True) as progress:
        task = progress.add_task("grades", total=total)

        def advance(item_id: int, outcome: Outcome) -> None:
            if outcome is not Outcome.RETRY:
                progress.advance(task)

        return delivery.sync(settings, catalog, rounds=rounds, sleep=sleep, on_item=advance)


@grades_cli.command("sync")
@one_line_errors
def sync_command() -> None:
    """Send every waiting grade now (failed ones again too), backing off on quota errors."""
    report = sync_grades(current.settings(), current.catalog())
    click.echo(f"sent {report.count(Outcome.SENT)}, failed {report.count(Outcome.FAILED)}, still waiting "
               f"{report.count(Outcome.WAITING) + report.count(Outcome.RETRY)}")
    problems = {item.last_error for item in list_grades(limit=1000) if item.status != OutboxStatus.SENT and item.last_error}
    for problem in sorted(problems):
        click.echo(f"- {problem}")
    if report.count(Outcome.FAILED) or report.count(Outcome.RETRY):
        raise SystemExit(1)


@grades_cli.command("export")
@click.option("--sheet", "sheet_id", required=True, help="The spreadsheet id (from its URL).")
@click.option("--course", "alias", default=None, help="Only this course's students.")
@one_line_errors
def export_command(sheet_id: str, alias: str | None) -> None:
    """Write one row per student and lesson into the sheet's first tab."""
    count = sheets.export(current.settings(), current.catalog(), sheet_id, get_course(alias) if alias else None)
    click.echo(f"wrote {count} rows")


@grades_cli.command("regrade")
@click.argument("run_id", metavar="RUN", type=int)
@one_line_errors
def regrade_command(run_id: int) -> None:
    """Send a completed run's grade to Classroom again (through the outbox, like every grade)."""
    regrade = grading_service.regrade(run_id, operator())
    db.session.commit()
    item, points, email = regrade.item, regrade.item.payload["points"], regrade.item.payload["student_email"]
    what = "queued for Classroom again" if regrade.new else "had not reached Classroom yet; queued again now"
    click.echo(f"run {run_id}: the grade of {email} ({points} points) {what} (outbox item {item.id})")
