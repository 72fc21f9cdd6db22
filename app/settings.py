"""Settings: one place, read from ``LESSONBOT_*`` environment variables and an optional env file.

The process environment wins over the env file: the file named by ``LESSONBOT_ENV_FILE``
(production: ``/etc/lessonbot/lessonbot.env``), else ``.env`` in the repository root
(development). Defaults let ``make demo`` run on SQLite under
``instance/``; secrets have no defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_LESSONS_DIR = Path(__file__).resolve().parent / "lessons" / "files"
SECRET_NAMES = ("LESSONBOT_SECRET_KEY", "LESSONBOT_INTERNAL_TOKEN", "LESSONBOT_GIT_HOOK_SECRET")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming each."""


def _env_file() -> Path:
    """LESSONBOT_ENV_FILE when set (production), else .env in the repository root."""
    explicit = os.environ.get("LESSONBOT_ENV_FILE")
    return Path(explicit) if explicit else PROJECT_ROOT / ".env"


class Settings(BaseSettings):
    """Every setting of the core and its workers."""

    model_config = SettingsConfigDict(env_prefix="LESSONBOT_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=f"sqlite:///{INSTANCE_DIR / 'lessonbot.sqlite3'}",
        validation_alias=AliasChoices("DATABASE_URL", "LESSONBOT_DATABASE_URL"),
        description="SQLAlchemy URL; postgresql://… in production and tests.",
    )
    secret_key: SecretStr = Field(description="Signs sessions and derives per-repository keys.")
    internal_token: SecretStr = Field(description="Bearer token the receiver sends to /internal/*.")
    git_hook_secret: SecretStr = Field(description="Root key of the git hooks' HMAC signatures.")

    git_root: Path = Field(default=INSTANCE_DIR / "git", description="Directory of hosted bare repositories.")
    git_public_url: str | None = Field(default=None, description="https://host/git — clone URL base; unset: by path.")
    hook_url: str = Field(default="http://127.0.0.1:5080/git/hook", description="Where post-receive hooks post.")
    git_repo_quota_bytes: int = Field(default=32 * 1024 * 1024, gt=0,
                                      description="Largest unpacked size of a hosted repository; bigger pushes are refused.")
    git_check_read_bytes: int = Field(default=1024 * 1024, gt=0,
                                      description="Most a git.* check reads of one file or of a branch's commit messages.")
    lessons_dir: Path = Field(default=DEFAULT_LESSONS_DIR, description="Directory of lesson YAML files.")
    default_language: Literal["ru", "en"] = "ru"
    log_dir: Path | None = Field(default=None, description="Write JSON logs here as well as to stderr.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=256 * 1024, gt=1024, description="Largest accepted request body.")

    poll_interval_seconds: float = Field(default=5.0, gt=0, description="Poller sleep when it found no work.")
    check_interval_seconds: float = Field(default=60.0, gt=0, description="First delay between automatic checks.")
    check_interval_max_seconds: float = Field(default=900.0, gt=0, description="Cap of the check backoff.")
    reminder_after_hours: float = Field(default=24.0, gt=0, description="Idle time before a reminder.")
    run_timeout_days: float = Field(default=14.0, gt=0, description="Idle time before a run is stopped.")

    # Zulip: the bot's account, and where the receiver hands messages to the core.
    zulip_site: str | None = Field(default=None, description="https://chat.example.org")
    zulip_email: str | None = Field(default=None, description="The bot's email, e.g. lessonbot-bot@chat.example.org.")
    zulip_api_key: SecretStr | None = Field(default=None, description="The bot's API key.")
    zulip_rate_per_minute: float = Field(default=200.0, gt=0, description="The bot's Zulip request budget.")
    zulip_reply_max_attempts: int = Field(default=12, ge=1, description="Attempts before a reply is marked failed.")
    zulip_sender_threads: int = Field(default=4, ge=1, le=32, description="Reply sender threads in the poller.")
    core_url: str = Field(default="http://127.0.0.1:8080", description="The core as the receiver reaches it (loopback).")

    # Google: the Web OAuth client, the stored authorization, Classroom/Drive/Sheets targets, log shipping.
    google_client_id: str | None = Field(default=None, description="The Web OAuth client's id.")
    google_client_secret: SecretStr | None = Field(default=None, description="The Web OAuth client's secret.")
    public_url: str = Field(default="http://127.0.0.1:5080", description="The app's own address (OAuth redirects).")
    google_api_endpoint: str | None = Field(default=None, description="Override of Google's API host (tests).")
    google_auth_uri: str = Field(default="https://accounts.google.com/o/oauth2/auth")
    google_token_uri: str = Field(default="https://oauth2.googleapis.com/token")
    google_scopes: Annotated[tuple[str, ...], NoDecode] = Field(default=(
        "openid", "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/classroom.courses",
        "https://www.googleapis.com/auth/classroom.coursework.students",
        "https://www.googleapis.com/auth/classroom.rosters.readonly",
        "https://www.googleapis.com/auth/classroom.profile.emails",
        "https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/spreadsheets",
    ), description="Scopes asked for by `google auth` (comma-separated in the env).")
    google_drive_folder_id: str | None = Field(default=None, description="Drive folder (or Shared Drive) for shipped logs.")
    google_sheet_id: str | None = Field(default=None, description="Gradebook spreadsheet kept current on completion.")
    grade_max_attempts: int = Field(default=20, ge=1, description="Attempts before a grade is marked failed.")
    log_rotate_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Rotate a log at this size.")
    log_rotate_hours: float = Field(default=24.0, gt=0, description="…or when its first line is this old.")
    log_upload_chunk_bytes: int = Field(default=8 * 1024 * 1024, gt=0, multiple_of=256 * 1024,
                                        description="Resumable upload chunk (a multiple of 256 KiB).")
    log_ship_interval_seconds: float = Field(default=60.0, gt=0, description="Shipper sleep when it found no work.")

    @field_validator("google_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("postgresql", "postgres://", "sqlite")):
            raise ValueError("must start with postgresql:// or sqlite://")
        return value

    @field_validator("secret_key", "internal_token", "git_hook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (try: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with our driver: SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://."""
        for prefix in ("postgresql://", "postgres://"):
            if self.database_url.startswith(prefix):
                return "postgresql+psycopg2://" + self.database_url[len(prefix):]
        return self.database_url

    @property
    def is_postgresql(self) -> bool:
        return self.database_url.startswith(("postgresql", "postgres://"))


def _setting_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field == "database_url":
        return "DATABASE_URL"
    return f"LESSONBOT_{field.upper()}"


def describe(error: ValidationError) -> str:
    """Turn pydantic's report into one line that names each bad setting and the fix."""
    problems = []
    for item in error.errors():
        name = _setting_name(item["loc"])
        if item["type"] == "missing":
            problems.append(f"{name} is missing")
        else:
            problems.append(f"{name} is malformed ({str(item['msg']).removeprefix('Value error, ')})")
    return "Configuration error: " + "; ".join(problems) + ". Set it in the environment or the env file (see README, Settings)."


def load_settings(**overrides: Any) -> Settings:
    """Read the settings or raise ConfigError with a one-line message."""
    try:
        return Settings(_env_file=_env_file(), **overrides)  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def write_dev_env(path: Path) -> bool:
    """Create a development env file with fresh random secrets (mode 0600). False if it exists."""
    if path.exists():
        return False
    lines = [f"{name}={secrets.token_urlsafe(32)}" for name in SECRET_NAMES]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Development settings written by `make demo`; never commit this file.\n")
        handle.write("\n".join(lines) + "\n")
    return True

