"""./manage.py backup …: encrypted database backups on Drive, their list, and restore."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from sqlalchemy.exc import OperationalError, ProgrammingError

from app import current
from app.backup.service import (
    Backup,
    BackupError,
    create_backup,
    drive_backups,
    fetch_from_drive,
    list_backups,
    restore_backup,
)
from app.cli.errors import one_line_errors
from app.db import db
from app.logship.drive import ShipError
from app.settings import Settings, schema_missing

backup_cli = AppGroup("backup", help="Encrypted database backups: create, list, restore (see README, Backups).")


def _age(created: datetime) -> str:
    hours = (datetime.now(UTC) - created).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


@backup_cli.command("create")
@one_line_errors
def create_command() -> None:
    """Dump the database, encrypt it with age, keep it locally, upload it to Drive and verify it.

    Retention (LESSONBOT_BACKUP_KEEP_*) is applied only after the upload was verified. A second
    `backup create` while one runs is refused.
    """
    settings = current.settings()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("uploading", total=None)
            backup = create_backup(settings, db.engine, progress=lambda n: progress.advance(task, n))
    except (BackupError, ShipError) as error:
        raise click.ClickException(str(error)) from None
    where = f"Drive {backup.drive_id}, verified" if backup.verified else "kept locally only (no Drive folder set)"
    click.echo(f"backup {backup.name}: {backup.size} bytes, {where}")


@backup_cli.command("list")
@click.option("--drive/--no-drive", default=True, show_default=True, help="Also list the backups found on Drive.")
@one_line_errors
def list_command(drive: bool) -> None:
    """Every backup: size, age, whether it is on this disk, on Drive, and verified."""
    settings = current.settings()
    try:
        known = {b.name: b for b in list_backups(settings)}
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    remote = {f["name"]: f for f in drive_backups(settings)} if drive else {}
    table = Table("name", "size", "age", "local", "Drive", "verified")
    for name in sorted(set(known) | set(remote), reverse=True):
        backup = known.get(name) or Backup(name=name, created=remote[name]["createdTime"].replace("Z", "+00:00"),
                                           size=int(remote[name].get("size", 0)), md5="", local=False)
        on_drive = remote[name]["id"] if name in remote else ("?" if not drive and backup.drive_id else "—")
        table.add_row(name, str(backup.size), _age(backup.created_at), "yes" if backup.local else "—", on_drive,
                      "yes" if backup.verified else "no")
    if not table.rows:
        click.echo("no backups yet: ./manage.py backup create")
        return
    Console(width=160).print(table)


def _from_drive(settings: Settings, file_id: str, scratch: Path) -> Path:
    """Download the backup; the Google authorization it needs is kept in the database being replaced."""
    try:
        return fetch_from_drive(settings, file_id, scratch)
    except (OperationalError, ProgrammingError) as error:
        if not schema_missing(error):
            raise
        raise click.ClickException(
            "restoring from Drive needs the Google authorization, and this database has no Lessonbot tables: run "
            "./manage.py db upgrade and ./manage.py google auth here first, then restore into an empty database "
            "with --database (README, Restore drill)") from None


@backup_cli.command("restore")
@click.argument("source")
@click.option("--identity", "-i", required=True, type=click.Path(path_type=Path),
              help="The age private key file (from age-keygen) that decrypts the backup.")
@click.option("--database", "target", help="Restore into this empty database (default: DATABASE_URL).")
@one_line_errors
def restore_command(source: str, identity: Path, target: str | None) -> None:
    """Restore SOURCE (a backup file, or a Drive file id) into an empty database, then check it.

    Checks that the schema is at this release's newest migration and prints the row counts.
    """
    settings = current.settings()
    with tempfile.TemporaryDirectory(prefix="lessonbot-restore-") as scratch:
        try:
            path = Path(source) if Path(source).is_file() else _from_drive(settings, source, Path(scratch))
            report = restore_backup(settings, path, identity, target or settings.database_url)
        except BackupError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"restored {path.name} into {report.database} at migration {report.revision}")
    for table, count in sorted(report.rows.items()):
        click.echo(f"  {table:24} {count:>10} rows")
