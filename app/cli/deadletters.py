"""./manage.py deadletters …: Zulip messages the core could not take, set aside by the receiver."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from app.zulip.deadletters import recent_dead_letters

deadletters_cli = AppGroup("deadletters", help="Zulip messages the core could not take (the student got an apology).")


@deadletters_cli.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many, newest first.")
def list_command(limit: int) -> None:
    """List dead letters, newest first: Zulip message id, sender, attempts, reason and the start of the text."""
    table = Table("message id", "sender", "attempts", "set aside", "reason", "content")
    for letter in recent_dead_letters(limit):
        table.add_row(str(letter.message_id), letter.sender, str(letter.attempts),
                      letter.created_at.strftime("%Y-%m-%d %H:%M:%S"), letter.reason[:120], letter.content[:60])
    Console().print(table)
