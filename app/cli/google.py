"""./manage.py google … and admins …: the account Lessonbot acts as, and who may use the admin pages."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from rich.console import Console

from app import current
from app.cli.errors import one_line_errors
from app.db import db
from app.google import signin
from app.google.client import google_status
from app.settings import Settings

google_cli = AppGroup("google", help="Authorize Lessonbot's Google account and check it.")
admins_cli = AppGroup("admins", help="Who may sign in to the admin web pages (with Google).")



def start_authorization(settings: Settings) -> str:
    """Record a one-time authorization request; the URL the admin opens."""
    request = signin.begin(settings, "service")
    url = signin.authorization_url(settings, request)
    db.session.commit()
    return url


@google_cli.command("auth")
@one_line_errors
def auth_command() -> None:
    """Print the URL that authorizes Lessonbot to act as a Google account (Classroom, Drive, Sheets)."""
    settings = current.settings()
    url = start_authorization(settings)
    click.echo("Open this URL in a browser, signed in as the Google account Lessonbot should act as:\n")
    click.echo(url)
    click.echo(f"\nGoogle sends you back to {signin.redirect_uri(settings)}; the link works once, for 30 minutes.")
    click.echo("Then check with: ./manage.py google status")


@google_cli.command("status")
def status_command() -> None:
    """Show the account, its scopes and whether its token refreshes."""
    status = google_status(current.settings())
    if status is None:
        raise click.ClickException("Lessonbot has no Google authorization yet: run ./manage.py google auth")
    console = Console()
    console.print(f"account:    {status.email}")
    console.print(f"authorized: {status.authorized_at}")
    console.print("scopes:     " + "\n            ".join(status.scopes))
    if not status.refreshes:
        raise click.ClickException(f"the token does not refresh: {status.problem}")
    console.print("token:      refreshes [green]OK[/green]")


@admins_cli.command("add")
@click.argument("email")
@click.option("--zulip-user-id", type=click.IntRange(min=1), default=None,
              help="Their Zulip account (Zulip: their profile → user ID): it may give the bot `admin …` commands.")
@one_line_errors
def admins_add_command(email: str, zulip_user_id: int | None) -> None:
    """Allow EMAIL to sign in to the admin pages (and, with --zulip-user-id, to use admin commands in chat)."""
    added = signin.add_admin(email, zulip_user_id)
    db.session.commit()
    chat = f"; Zulip user {zulip_user_id} may use admin commands" if zulip_user_id else ""
    click.echo(f"{email.strip().lower()} {'added' if added else 'was already an admin'}{chat}")


@admins_cli.command("remove")
@click.argument("email")
@one_line_errors
def admins_remove_command(email: str) -> None:
    """Stop EMAIL from signing in to the admin pages; their open sessions end too."""
    signin.remove_admin(email)
    db.session.commit()
    click.echo(f"{email.strip().lower()} removed; their admin sessions have ended")


@admins_cli.command("list")
def admins_list_command() -> None:
    """List the admins."""
    admins = signin.list_admins()
    lines = [admin.email + (f"  (Zulip user {admin.zulip_user_id})" if admin.zulip_user_id else "") for admin in admins]
    click.echo("\n".join(lines) if lines else "No admins yet: ./manage.py admins add EMAIL")
