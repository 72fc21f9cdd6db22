"""./manage.py status: one screen that says what is wrong, and exit 1 if anything is."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table

from app.status.service import Level, system_status

STYLE = {Level.OK: "green", Level.OFF: "dim", Level.WARN: "yellow", Level.FAIL: "bold red"}


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts and monitoring).")
@with_appcontext
def status_command(as_json: bool) -> None:
    """Check the database, lessons, Zulip, Google, workers, outbox and backups; exit 1 if something failed."""
    report = system_status()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        table = Table("check", "state", "detail", "what to do", show_lines=False)
        for check in report.checks:
            table.add_row(check.name, f"[{STYLE[check.level]}]{check.level.value}[/]", check.detail, check.fix)
        Console(width=160).print(table)
        failed = [c.name for c in report.checks if c.level is Level.FAIL]
        click.echo("all good" if report.ok else f"{len(failed)} problem(s): {', '.join(failed)}")
    if not report.ok:
        sys.exit(1)
