"""./manage.py outbox …: what is waiting to leave, and what failed."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from app.db import db
from app.outbox.models import OutboxItem, OutboxStatus

outbox_cli = AppGroup("outbox", help="Inspect the outbox of replies and other external effects.")


@outbox_cli.command("list")
@click.option("--failed", is_flag=True, help="Only items that gave up, with the reason.")
@click.option("--pending", is_flag=True, help="Only items still waiting.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="At most this many items.")
def list_command(failed: bool, pending: bool, limit: int) -> None:
    """List outbox items, newest first."""
    query = sa.select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
    if failed:
        query = query.where(OutboxItem.status == OutboxStatus.FAILED)
    elif pending:
        query = query.where(OutboxItem.status == OutboxStatus.PENDING)
    table = Table("id", "kind", "status", "attempts", "created", "error")
    for item in db.session.scalars(query):
        table.add_row(str(item.id), item.kind.value, item.status.value, str(item.attempts),
                      item.created_at.strftime("%Y-%m-%d %H:%M:%S"), item.last_error or "")
    Console().print(table)
