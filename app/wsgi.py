"""The WSGI entry point for uWSGI: ``module = app.wsgi:app``."""

from __future__ import annotations

from app.boot import boot

_settings, app = boot("core", exit_code=1)
