"""One clear line and a non-zero exit for the errors an admin can act on."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from app.courses.service import CourseError
from app.google.client import GoogleError
from app.google.signin import SignInError

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED = (GoogleError, CourseError, SignInError, ValueError)


def one_line_errors(command: F) -> F:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]
