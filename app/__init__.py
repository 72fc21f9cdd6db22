"""Lessonbot core: the Flask app factory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from app.db import db, migrate, ping_after_idle
from app.lessons.catalog import load_catalog
from app.settings import Settings, load_settings


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """Build the app: settings, database, lessons, blueprints. Raises ConfigError or InvalidLessons."""
    settings = settings or load_settings()
    app = Flask(__name__, instance_path=_instance_path())
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value(),
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        # The session cookie (admin sign-in, link confirmation): HTTPS only, no scripts, no cross-site POSTs.
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.admin_session_hours),
    )
    app.config.update(config)
    app.extensions["lessonbot.settings"] = settings
    app.extensions["lessonbot.catalog"] = load_catalog(settings.lessons_dir)

    db.init_app(app)
    if settings.is_postgresql:
        with app.app_context():
            ping_after_idle(db.engine)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    from app import http, models  # noqa: F401  (models: register tables for migrations)
    from app.metrics import exposition

    http.init_app(app)
    exposition.init_app(app)
    _register_blueprints(app)
    _register_cli(app)
    return app


def _instance_path() -> str:
    from app.settings import INSTANCE_DIR

    return str(INSTANCE_DIR)


def _migrations_dir() -> Any:
    from app.settings import PROJECT_ROOT

    return PROJECT_ROOT / "migrations"


def _engine_options(settings: Settings) -> dict[str, Any]:
    if settings.is_postgresql:
        # A connection PostgreSQL ended (a restart, a failover, an idle timeout) is replaced at
        # checkout, instead of failing the first request each worker serves after it: see
        # ping_after_idle, which pings only a connection that sat idle (not one per request).
        return {"pool_size": 5, "max_overflow": max(10, pool_room_for_dispatchers(settings.dispatcher_threads)),
                "pool_recycle": 1800, "connect_args": {"connect_timeout": 5}}
    # SQLite: several threads (console chat + hook server) share one file.
    return {"connect_args": {"check_same_thread": False, "timeout": 15}}


CONNECTIONS_PER_DISPATCHER = 3  # its LISTEN, its claims' connection (which holds the queue locks), its session's


def pool_room_for_dispatchers(threads: int) -> int:
    """The pool's overflow a dispatcher process needs: every thread holds its connections at the same time,
    with one to spare for the heartbeat. A smaller pool made the threads wait on each other's connections
    (the pool's 30 s timeout, then a failed pass), from five threads on."""
    return CONNECTIONS_PER_DISPATCHER * threads + 1


def _register_blueprints(app: Flask) -> None:
    from app.admin.views import bp as admin_bp
    from app.alerts.views import bp as alerts_bp
    from app.chat.views import bp as chat_bp
    from app.git.views import bp as git_bp
    from app.github.views import bp as github_bp
    from app.google.views import bp as google_bp
    from app.health.views import bp as health_bp

    for blueprint in (health_bp, chat_bp, git_bp, github_bp, google_bp, admin_bp, alerts_bp):
        app.register_blueprint(blueprint)


def _register_cli(app: Flask) -> None:
    from app.cli import command_groups

    for command in command_groups():
        app.cli.add_command(command)
