"""./manage.py github …: the course's GitHub App."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app import current
from app.github.client import GitHubError, describe

github_cli = AppGroup("github", help="Check the course's GitHub App and its installation.")


@github_cli.command("check")
def check_command() -> None:
    """One line: the App, the organization, its permissions and the rate limit left (exit 1 if anything is wrong)."""
    settings = current.settings()
    try:
        line, complete = describe(settings)
    except GitHubError as error:
        click.echo(f"GitHub check failed: {error}", err=True)
        sys.exit(1)
    click.echo(line)
    if not complete:
        sys.exit(1)
