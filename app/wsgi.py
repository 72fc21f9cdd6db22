"""The WSGI entry point for uWSGI: ``module = app.wsgi:app``."""

from __future__ import annotations

import sys

from app import create_app
from app.lessons.catalog import InvalidLessons
from app.logs import configure_logging
from app.settings import ConfigError, load_settings

try:
    _settings = load_settings()
    configure_logging(_settings, "core")
    app = create_app(_settings)
except (ConfigError, InvalidLessons) as error:
    print(error, file=sys.stderr)
    raise SystemExit(1) from None
