"""One clear line and a non-zero exit for the errors an admin can act on; who the admin is, for the log."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from app.courses.service import CourseError
from app.google.client import GoogleError
from app.google.signin import SignInError
from app.grading.service import GradeError
from app.runs.service import RunError
from app.students.service import StudentNotFound

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED = (GoogleError, CourseError, SignInError, RunError, GradeError, StudentNotFound, ValueError)


def one_line_errors(command: F) -> F:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]


def operator() -> str:
    """Who runs this command, for the log: the person behind `sudo -u lessonbot`, else the OS user."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"
