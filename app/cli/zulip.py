"""./manage.py zulip …: the bot's connection to Zulip."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app import current
from app.zulip.api import NotConfigured, ZulipError
from app.zulip.connect import describe_bot

zulip_cli = AppGroup("zulip", help="Check the bot's Zulip account and server.")


@zulip_cli.command("check")
def check_command() -> None:
    """Verify the bot's credentials; print the bot's name, the server and its version."""
    settings = current.settings()
    try:
        lines = describe_bot(settings)
    except NotConfigured as error:
        click.echo(f"{error}.", err=True)
        sys.exit(1)
    except ZulipError as error:
        reason = str(error)
        if error.code in ("UNAUTHORIZED", "INVALID_API_KEY") or "401" in reason or "Invalid API key" in reason:
            reason = "the server refused the bot's email or API key (check LESSONBOT_ZULIP_EMAIL and LESSONBOT_ZULIP_API_KEY)"
        click.echo(f"Cannot reach Zulip at {settings.zulip_site}: {reason}", err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)
