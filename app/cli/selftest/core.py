"""The core a lesson test runs against: its own settings, a fresh SQLite database, served on loopback.

Nothing comes from the environment or a .env file, so a lesson's test gives the same
answer on an author's laptop, in CI and on the server; nothing the test does reaches the
configured database, Zulip, GitHub or Google.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from app.db import db
from app.settings import Settings

DATABASE = "lessonbot.sqlite3"


class IsolatedSettings(Settings):
    """Settings from the arguments alone: no environment variables, no env file."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def isolated_settings(workdir: Path, lessons_dir: Path, **more: Any) -> Settings:
    """A core that keeps everything under `workdir`, with fresh secrets; English for new students."""
    return IsolatedSettings(
        database_url=f"sqlite:///{workdir / DATABASE}", git_root=workdir / "git", lessons_dir=lessons_dir,
        secret_key=_fresh_secret(), internal_token=_fresh_secret(), git_hook_secret=_fresh_secret(), default_language="en",
        backup_dir=workdir / "backups", **more)


def _fresh_secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


@contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """The core's own log lines (and the tracebacks of errors it isolates) stay out of the report unless asked for."""
    logging.disable(logging.INFO if verbose else logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def migrated_database(directory: Path, lessons_dir: Path) -> Path:
    """A SQLite database at the migrations' head, made once per command; each lesson starts from a copy."""
    from flask_migrate import upgrade

    from app import create_app

    app = create_app(isolated_settings(directory, lessons_dir))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return directory / DATABASE


def fresh_app(settings: Settings, migrated: Path) -> Flask:
    """The app on a copy of the migrated database named by the settings."""
    from app import create_app

    target = Path(settings.database_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated, target)
    return create_app(settings)
