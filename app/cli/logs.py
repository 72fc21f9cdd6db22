"""./manage.py logs …: ship the logs to Google Drive now, and see what is waiting."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from app import current
from app.cli.errors import one_line_errors
from app.logship.shipper import LogShipper, NotConfigured, PassReport, live_files, waiting_files
from app.settings import Settings

logs_cli = AppGroup("logs", help="Ship the JSON logs to Google Drive.")



def ship_logs(settings: Settings, *, rotate_all: bool = True, grace_seconds: float = 1.0) -> PassReport:
    """One pass with a progress bar; rotate_all ships the current logs too, whatever their size or age."""
    shipper = LogShipper(settings, grace_seconds=grace_seconds, force_rotation=rotate_all)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("preparing", total=None)

        def on_file(path: Path) -> None:
            progress.update(task, description=path.name, completed=0, total=path.stat().st_size)

        return shipper.run_once(lambda n: progress.advance(task, n), on_file)


@logs_cli.command("ship")
@click.option("--due-only", is_flag=True, help="Rotate only logs past the size or age limit (as the worker does).")
@one_line_errors
def ship_command(due_only: bool) -> None:
    """Rotate, compress and upload the logs now; delete each file after Drive confirms it."""
    try:
        report = ship_logs(current.settings(), rotate_all=not due_only)
    except NotConfigured as error:
        raise click.ClickException(str(error)) from None
    for name, file_id in report.shipped.items():
        click.echo(f"shipped {name} → Drive {file_id}")
    if not report.shipped and not report.errors:
        click.echo("nothing to ship")
    for problem in report.errors:
        click.echo(f"not shipped: {problem}", err=True)
    if report.errors:
        raise SystemExit(1)


@logs_cli.command("status")
def status_command() -> None:
    """Show the live logs and the files waiting to be uploaded."""
    settings = current.settings()
    try:
        waiting, live = waiting_files(settings), live_files(settings)
    except NotConfigured as error:
        raise click.ClickException(str(error)) from None
    table = Table("file", "bytes", "state")
    for name, size in live:
        table.add_row(name, str(size), "live")
    for item in waiting:
        where = "uploading (resumes)" if item.uploaded_session else "compressing" if not item.name.endswith(".gz") else "waiting"
        table.add_row(item.name, str(item.size), where)
    Console(width=160).print(table)
    click.echo(f"{len(waiting)} file(s) waiting; Drive folder: {settings.google_drive_folder_id or 'NOT SET'}")
