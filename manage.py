#!/usr/bin/env python3
"""Lessonbot administration: ./manage.py --help lists the command groups.

Run as ``./manage.py`` it starts again under the project's virtualenv (``.venv`` beside
this file, which ``make demo`` and the deployment create), so the system python3 works
as an entry point. Help never needs settings; a command loads them (and the database)
only when it runs.
"""

import os
import sys
from pathlib import Path

_VENV = Path(__file__).resolve().parent / ".venv"
if Path(sys.prefix).resolve() != _VENV.resolve() and (_VENV / "bin" / "python").exists():
    os.execv(_VENV / "bin" / "python", [str(_VENV / "bin" / "python"), __file__, *sys.argv[1:]])

try:
    import click
    from flask.cli import FlaskGroup
    from flask_migrate.cli import db as migrate_cli
    from sqlalchemy.exc import OperationalError, ProgrammingError
except ModuleNotFoundError as missing:
    sys.exit(f"manage.py: {missing.name} is not installed; create the virtualenv first with `make demo` "
             f"(or `make .venv/.installed`), then run ./manage.py again")

from app.boot import boot  # noqa: E402  (after the virtualenv check above)
from app.cli import command_groups  # noqa: E402
from app.settings import database_error_line, schema_missing  # noqa: E402


class ManageGroup(FlaskGroup):
    """Flask's CLI without Flask's own commands and options, and without loading the app to list or explain commands."""

    def __init__(self) -> None:
        super().__init__(create_app=lambda: boot("manage")[1], add_default_commands=False, load_dotenv=False,
                         add_version_option=False,
                         help="Lessonbot administration. Settings come from the environment and .env (see README).")
        self.params = [param for param in self.params if param.name not in {"app", "env_file", "debug"}]
        for command in command_groups():
            self.add_command(command)
        self.add_command(migrate_cli, "db")

    def invoke(self, ctx: click.Context) -> object:
        """One line and exit 1 for a bad option (``--limit -1``) and for a database unreachable or not migrated."""
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a group without a command shows its help, as Click does
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "manage.py"
            click.echo(f"Error: {error.format_message()} (see {where} --help)", err=True)
            sys.exit(1)
        except (OperationalError, ProgrammingError) as error:
            if isinstance(error, ProgrammingError) and not schema_missing(error):
                raise  # a bug in our SQL, not the admin's database: keep the traceback
            click.echo(database_error_line(error), err=True)
            sys.exit(1)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self.commands.get(name)


cli = ManageGroup()

if __name__ == "__main__":
    cli()
