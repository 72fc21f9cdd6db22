"""Settings: one place, read from ``LESSONBOT_*`` environment variables and an optional env file.

The process environment wins over the env file: the file named by ``LESSONBOT_ENV_FILE``
(production: ``/etc/lessonbot/lessonbot.env``), else ``.env`` in the repository root
(development). Defaults let ``make demo`` run on SQLite under
``instance/``; secrets have no defaults.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv.parser import parse_stream
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_LESSONS_DIR = Path(__file__).resolve().parent / "lessons" / "files"
DATABASE_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2", "sqlite"}
SECRET_NAMES = ("LESSONBOT_SECRET_KEY", "LESSONBOT_INTERNAL_TOKEN", "LESSONBOT_GIT_HOOK_SECRET")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming each."""


def _env_file() -> Path:
    """LESSONBOT_ENV_FILE when set (production), else .env in the repository root."""
    explicit = os.environ.get("LESSONBOT_ENV_FILE")
    return Path(explicit) if explicit else PROJECT_ROOT / ".env"


class Settings(BaseSettings):
    """Every setting of the core and its workers."""

    # allow_inf_nan=False: one rule for every number setting; "inf" or "nan" as an interval
    # or a limit would turn a back-off into a division by nothing or a wait forever.
    model_config = SettingsConfigDict(env_prefix="LESSONBOT_", extra="ignore", frozen=True, allow_inf_nan=False)

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
    history_keep_days: float = Field(default=120.0, gt=0, description=(
        "Inbound messages and delivered chat replies older than this are deleted (grades are kept)."))
    stuck_after_hours: float = Field(default=24.0, gt=0, description=(
        "The admin pages call a run stuck when it has been on the same step this long."))
    worker_stale_seconds: float = Field(default=120.0, ge=1, description=(
        "A worker silent this long is stale and /health answers 503 (the log shipper gets six times it plus its interval)."))

    # Zulip: the bot's account, and where the receiver hands messages to the core.
    zulip_site: str | None = Field(default=None, description="https://chat.example.org")
    zulip_email: str | None = Field(default=None, max_length=254,
                                    description="The bot's email, e.g. lessonbot-bot@chat.example.org.")
    zulip_api_key: SecretStr | None = Field(default=None, description="The bot's API key.")
    zulip_bot_name: str = Field(default="Lessonbot", min_length=1, max_length=100,
                                description="The bot's full name in Zulip: a leading @**Name** of it is not part of a command.")
    zulip_rate_per_minute: float = Field(default=200.0, gt=0, description="The bot's Zulip request budget.")
    zulip_reply_max_attempts: int = Field(default=12, ge=1, description="Attempts before a reply is marked failed.")
    dispatcher_threads: int = Field(default=4, ge=1, le=32, description=(
        "Outbox dispatcher threads per dispatcher process; each holds up to three PostgreSQL connections."))
    core_url: str = Field(default="http://127.0.0.1:8080", description="The core as the receiver reaches it (loopback).")
    ops_stream: str = Field(default="lessonbot-ops", min_length=1, max_length=60,
                            description="The Zulip stream where alerts from Alertmanager go.")
    ops_topic: str = Field(default="alerts", min_length=1, max_length=60, description="…and their topic.")

    # Metrics: each worker serves its own on 127.0.0.1 (the core's are at /metrics); 0 turns one off.
    # The monitoring role scrapes these ports (roles/monitoring/defaults/main.yml).
    metrics_port_poller: int = Field(default=9311, ge=0, le=65535, description="The poller's /metrics port.")
    metrics_port_receiver: int = Field(default=9312, ge=0, le=65535, description="The receiver's /metrics port.")
    metrics_port_log_shipper: int = Field(default=9313, ge=0, le=65535, description="The log shipper's /metrics port.")
    metrics_port_dispatcher: int = Field(default=9314, ge=0, le=65535, description="The dispatcher's /metrics port.")
    worker_index: int = Field(default=0, ge=0, le=99, description=(
        "Which of a program's several processes this is (supervisor's process_num, set by the supervisor role when "
        "numprocs > 1): process N serves its metrics on the program's port + N."))

    # Google: the Web OAuth client, the stored authorization, Classroom/Drive/Sheets targets, log shipping.
    google_client_id: str | None = Field(default=None, description="The Web OAuth client's id.")
    google_client_secret: SecretStr | None = Field(default=None, description="The Web OAuth client's secret.")
    public_url: str = Field(default="http://127.0.0.1:5080", description="The app's own address (OAuth redirects).")
    session_cookie_secure: bool = Field(default=True, description="Send the session cookie over HTTPS only.")
    admin_session_hours: float = Field(default=8.0, gt=0, le=24 * 7, allow_inf_nan=False,
                                       description="An admin sign-in lasts this long, however active.")
    admin_login_per_address_per_minute: int = Field(default=10, ge=1, description="GET /admin/login per client address.")
    admin_login_per_minute: int = Field(default=60, ge=1, description="GET /admin/login from everyone together.")
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
    grade_quota_backoff_max_seconds: float = Field(
        default=60.0, gt=0, le=3600, allow_inf_nan=False,
        description="Longest wait after a Classroom quota error (429); quota errors never fail a grade.")
    log_rotate_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Rotate a log at this size.")
    log_rotate_hours: float = Field(default=24.0, gt=0, description="…or when its first line is this old.")
    log_upload_chunk_bytes: int = Field(default=8 * 1024 * 1024, gt=0, multiple_of=256 * 1024,
                                        description="Resumable upload chunk (a multiple of 256 KiB).")
    log_ship_interval_seconds: float = Field(default=60.0, gt=0, description="Shipper sleep when it found no work.")

    # GitHub: the course's GitHub App, installed on the organization that holds the runs' repositories.
    github_api_url: str = Field(default="https://api.github.com", description="GitHub's REST API (tests: a local server).")
    github_app_id: int | None = Field(default=None, gt=0, description="The GitHub App's id (its settings page, 'App ID').")
    github_private_key_file: Path | None = Field(default=None, description=(
        "The App's private key (PEM), a file only the app's user can read (mode 0600 or 0400)."))
    github_private_key: SecretStr | None = Field(default=None, description=(
        "The App's private key (PEM) itself, instead of a file (newlines as \\n)."))
    github_org: str | None = Field(default=None, pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$",
                                   description="The organization the App is installed on; runs' repositories go there.")
    github_request_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="One GitHub API call at most.")
    github_requests_per_hour: int = Field(default=5000, ge=100, description=(
        "The installation's hourly budget for answers other than 304 (GitHub's: 5 000); polling keeps a tenth free."))
    github_poll_interval_seconds: float = Field(default=900.0, gt=0, description=(
        "The poller looks at each GitHub run once in this long (webhooks come first; see README, polling)."))
    github_webhook_secret: SecretStr | None = Field(default=None, description=(
        "The App's webhook secret: /github/hook accepts only deliveries signed with it; unset: no webhooks."))
    github_archive_after_days: float = Field(default=7.0, ge=0, description=(
        "A run's repository is archived (read-only, kept) this long after the run ended."))

    # Backups: pg_dump, encrypted with age to these public keys, kept here and uploaded to Drive.
    backup_dir: Path = Field(default=INSTANCE_DIR / "backups", description="Encrypted dumps (and the upload state).")
    backup_age_recipients: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="age public keys (age1…) that can decrypt backups, comma-separated; ops keep the private key.")
    backup_drive_folder_id: str | None = Field(default=None, description="Drive folder for backups; unset: kept locally only.")
    backup_keep_daily: int = Field(default=7, ge=1, description="Retention: the newest backup of each of this many days…")
    backup_keep_weekly: int = Field(default=4, ge=0, description="…of this many ISO weeks…")
    backup_keep_monthly: int = Field(default=6, ge=0, description="…and of this many months.")

    @field_validator("google_scopes", "backup_age_recipients", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("backup_age_recipients")
    @classmethod
    def _age_public_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if not re.fullmatch(r"age1[02-9ac-hj-np-z]{58}", key):
                raise ValueError(f"{key[:12]}… is not an age public key (age1 followed by 58 characters; see age-keygen -y)")
        return value

    @field_validator("github_private_key_file")
    @classmethod
    def _private_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"{value} is not a file")
        if value.stat().st_mode & 0o077:
            raise ValueError(f"{value} can be read by others (mode {value.stat().st_mode & 0o777:o}); chmod 600 it")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as error:
            raise ValueError(f"is not a database URL ({error})") from None
        if url.drivername not in DATABASE_SCHEMES:
            raise ValueError("must start with postgresql:// or sqlite://")
        return value

    @field_validator("log_dir")
    @classmethod
    def _usable_directory(cls, value: Path | None) -> Path | None:
        # The directory is created at start; say now if something that is not a directory is in the way.
        if value is not None:
            for path in (value, *value.parents):
                if path.exists() and not path.is_dir():
                    raise ValueError(f"{path} is a file, not a directory")
        return value

    @field_validator("secret_key", "internal_token", "git_hook_secret", "github_webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (try: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)

    @property
    def database_location(self) -> str:
        """Where the database is, for error messages: host, port and name, never the password."""
        url = make_url(self.database_url)
        if url.drivername.startswith("sqlite"):
            return f"SQLite file {url.database or '(in memory)'}"
        host = url.host or "the local socket"
        return f"{host}:{url.port or 5432}/{url.database or ''}"

    @property
    def is_postgresql(self) -> bool:
        return self.database_url.startswith(("postgresql", "postgres://"))

    @property
    def has_google_client(self) -> bool:
        """Whether the Web OAuth client is set: without it students cannot `link` and no grade reaches Classroom."""
        return bool(self.google_client_id) and self.google_client_secret is not None


    @property
    def has_github(self) -> bool:
        """Whether the GitHub App is set up: without it the `github` platform's lessons cannot start."""
        has_key = self.github_private_key_file is not None or self.github_private_key is not None
        return self.github_app_id is not None and has_key and bool(self.github_org)


def sqlalchemy_url(database_url: str) -> str:
    """The URL with our driver: SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg2://" + database_url[len(prefix):]
    return database_url


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


def check_env_file(path: Path) -> None:
    """Refuse an env file that is not UTF-8 or has a line that cannot be read.

    python-dotenv skips a line it cannot parse (an unclosed quote) with a warning and
    carries on, which would silently drop a setting; here it is an error naming the line.
    """
    if not path.is_file():
        return
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise ConfigError(f"Configuration error: the env file {path} is not UTF-8 text (line {line}). "
                          "Save it as UTF-8.") from None
    except OSError as error:
        raise ConfigError(f"Configuration error: cannot read the env file {path} ({error.strerror}).") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"Configuration error: the env file {path}, line {binding.original.line}, cannot be read "
                              "(an unclosed quote?). Write it as NAME=value or NAME=\"value\".")


def load_settings(**overrides: Any) -> Settings:
    """Read the settings or raise ConfigError with a one-line message."""
    env_file = _env_file()
    check_env_file(env_file)
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def database_error_line(error: BaseException) -> str:
    """One line for a database that cannot be used: where it is (never the password) and what the driver said."""
    try:
        location = load_settings().database_location
    except ConfigError:
        location = "DATABASE_URL"
    orig = getattr(error, "orig", None) or error
    said = next((line.strip() for line in str(orig).splitlines() if line.strip()), type(orig).__name__)
    if schema_missing(error):
        return (f"Database error: the database at {location} has no Lessonbot tables yet, or is older than this "
                f"release ({said}); run ./manage.py db upgrade first")
    return (f"Database error: cannot use the database at {location} ({said}). "
            "Is it running and reachable, and migrated (./manage.py db upgrade)?")


def schema_missing(error: BaseException) -> bool:
    """PostgreSQL's undefined table or column (SQLSTATE 42P01, 42703), SQLite's "no such table/column"."""
    orig = getattr(error, "orig", None) or error
    return getattr(orig, "pgcode", None) in {"42P01", "42703"} or str(orig).startswith(("no such table",
                                                                                         "no such column"))


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

