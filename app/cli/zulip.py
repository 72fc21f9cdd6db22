"""./manage.py zulip …: the bot's connection to Zulip."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app import state
from app.settings import Settings
from app.zulip.api import NotConfigured, ZulipError
from app.zulip.connect import connect

zulip_cli = AppGroup("zulip", help="Check the bot's Zulip account and server.")


def describe_bot(settings: Settings) -> list[str]:
    """Lines about the bot and its server; raises NotConfigured or ZulipError."""
    api = connect(settings)
    me = api.call("users/me", "GET", timeout=10)
    server = api.call("server_settings", "GET", timeout=10)
    return [
        f"bot:     {me.get('full_name')} <{me.get('email')}> (user id {me.get('user_id')})",
        f"server:  {server.get('realm_name', '?')} at {settings.zulip_site}",
        f"version: Zulip {server.get('zulip_version', '?')} (feature level {server.get('zulip_feature_level', '?')})",
    ]


@zulip_cli.command("check")
def check_command() -> None:
    """Verify the bot's credentials; print the bot's name, the server and its version."""
    settings = state.settings()
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
