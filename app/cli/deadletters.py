"""./manage.py deadletters …: Zulip messages the core could not take, set aside by the receiver."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.zulip.deadletters import count_dead_letters, recent_dead_letters

deadletters_cli = AppGroup("deadletters", help="Zulip messages the core could not take (the student got an apology).")


@deadletters_cli.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many, newest first.")
def list_command(limit: int) -> None:
    """List dead letters, newest first: Zulip message id, sender, attempts, when, the reason and the start of the text."""
    letters = recent_dead_letters(limit)
    click.echo(f"{count_dead_letters()} dead letter(s)")
    for letter in letters:
        preview = letter.content[:80].replace("\n", " ")
        click.echo(f"message {letter.message_id} from {letter.sender}, {letter.attempts} attempt(s), "
                   f"{letter.created_at:%Y-%m-%d %H:%M:%S} UTC: {letter.reason[:200]}\n    “{preview}”")
