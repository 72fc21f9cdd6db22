#!/usr/bin/env python3
"""Lessonbot administration: ./manage.py --help lists the command groups."""

import sys

from flask.cli import FlaskGroup

from app import create_app
from app.cli.lessons import lessons_cli
from app.lessons.catalog import InvalidLessons
from app.logs import configure_logging
from app.settings import ConfigError, load_settings


def _create_app():  # type: ignore[no-untyped-def]
    try:
        settings = load_settings()
        configure_logging(settings, "manage")
        return create_app(settings)
    except (ConfigError, InvalidLessons) as error:
        print(error, file=sys.stderr)
        sys.exit(2)


cli = FlaskGroup(create_app=_create_app, load_dotenv=False, add_version_option=False,
                 help="Lessonbot administration. Settings come from the environment and .env (see README).")

cli.add_command(lessons_cli)  # works without a database or secrets

if __name__ == "__main__":
    cli()
