"""One way to start: settings, logging and the app, for wsgi, manage.py and every worker.

A bad setting or an invalid lesson ends the process with one line that names it, not a
traceback: the same message whichever entry point met it.
"""

from __future__ import annotations

import sys

from flask import Flask

from app.lessons.catalog import InvalidLessons
from app.settings import ConfigError, Settings, load_settings


def boot(component: str, *, exit_code: int = 2) -> tuple[Settings, Flask]:
    """Settings, logging (as ``component``) and the app; exits with one line on a configuration error."""
    from app import create_app
    from app.logs import configure_logging

    try:
        settings = load_settings()
        configure_logging(settings, component)
        return settings, create_app(settings)
    except (ConfigError, InvalidLessons) as error:
        print(error, file=sys.stderr)
        raise SystemExit(exit_code) from None
