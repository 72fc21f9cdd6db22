"""manage.py command groups, one module per area."""

from __future__ import annotations

import click


def command_groups() -> list[click.Command]:
    """Every manage.py command of ours (manage.py adds Flask-Migrate's ``db``); each loads the app only when run."""
    from app.cli.backup import backup_cli
    from app.cli.chat import chat_command
    from app.cli.courses import assignments_cli, courses_cli
    from app.cli.deadletters import deadletters_cli
    from app.cli.github import github_cli
    from app.cli.google import admins_cli, google_cli
    from app.cli.grades import grades_cli
    from app.cli.lessons import lessons_cli
    from app.cli.logs import logs_cli
    from app.cli.outbox import outbox_cli
    from app.cli.runs import runs_cli
    from app.cli.status import status_command
    from app.cli.students import students_cli
    from app.cli.zulip import zulip_cli

    return [status_command, lessons_cli, chat_command, outbox_cli, deadletters_cli, zulip_cli, github_cli, google_cli, admins_cli,
            courses_cli, assignments_cli, grades_cli, students_cli, runs_cli, logs_cli, backup_cli]
