"""Logging: readable lines on stderr and, when LESSONBOT_LOG_DIR is set, JSON lines in a file.

Logs are shipped to Drive, so no secret may reach them at any level:

- ``LESSONBOT_LOG_LEVEL`` applies to our own loggers only. Every other library stays at WARNING
  or above whatever the setting: at DEBUG, requests_oauthlib, oauthlib, urllib3, google-auth and
  googleapiclient print token requests and responses (codes, PKCE verifiers, client secrets,
  refresh and access tokens).
- Every handler also masks whatever looks like a credential, and the configured secret values
  themselves, in the message, the traceback and any extra field (``RedactSecrets``).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from app.settings import Settings

_RESERVED = set(vars(logging.makeLogRecord({})))
OWN_LOGGERS = ("app", "__main__")  # workers run as `python -m app.workers.…`: their module logger is __main__
THIRD_PARTY_LOGGERS = (
    "requests_oauthlib", "oauthlib", "urllib3", "requests", "google", "googleapiclient", "google_auth_oauthlib",
    "google_auth_httplib2", "httplib2", "zulip", "werkzeug", "sqlalchemy", "alembic", "flask_migrate",
    "githubkit", "httpx", "httpcore", "hishel",
)
MASK = "[redacted]"
_KEYS = r"(?:access_token|refresh_token|id_token|token|code|code_verifier|client_secret|password|api_key|secret|assertion)"
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value in URLs, form bodies and headers (also URL-encoded inside another URL: key%3Dvalue)
    (re.compile(rf"(?i)\b({_KEYS})(=|%3D)[^&\s'\"<>,;)\]]+"), rf"\1\2{MASK}"),
    # "key": "value" in JSON and dict reprs
    (re.compile(rf"(?i)([\"']{_KEYS}[\"']\s*:\s*)([\"'])(?:(?!\2).)*\2"), rf"\1\2{MASK}\2"),
    # Authorization headers
    (re.compile(r"(?i)\b(Bearer|Basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {MASK}"),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{MASK}@"),  # passwords in URLs (git clone URLs)
    (re.compile(r"1//[A-Za-z0-9_\-]{8,}"), MASK),  # Google refresh tokens
    (re.compile(r"ya29\.[A-Za-z0-9_\-.]+"), MASK),  # Google access tokens
    (re.compile(r"GOCSPX-[A-Za-z0-9_\-]+"), MASK),  # Google OAuth client secrets
    (re.compile(r"\b4/[0-9A-Za-z_\-]{16,}"), MASK),  # Google authorization codes
    (re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"), MASK),  # JWTs (id tokens, GitHub App JWTs)
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9_\-]{16,}"), MASK),  # GitHub tokens (installation ghs_, user ghu_/ghp_)
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL), MASK),
)


class RedactSecrets(logging.Filter):
    """Masks credentials in every record a handler emits (message, traceback, stack, extra fields)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole; short values would mask words.
        self.secrets = sorted({value for value in secrets if len(value) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, MASK)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line (nor raise in the caller)
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def configured_secrets(settings: Settings) -> list[str]:
    """The secret values of the settings (masked wherever they appear)."""
    values = [settings.secret_key, settings.internal_token, settings.git_hook_secret,
              settings.google_client_secret, settings.zulip_api_key, settings.github_private_key,
              settings.github_webhook_secret]
    return [value.get_secret_value() for value in values if value is not None]


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _RESERVED and not key.startswith("_")})
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str, ensure_ascii=False)


def set_levels(level_name: str) -> None:
    """Our loggers at ``level_name``; the root and every library at WARNING or above, whatever it is."""
    level = logging.getLevelName(level_name)
    floor = max(level, logging.WARNING)
    logging.getLogger().setLevel(floor)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(floor)


def configure_logging(settings: Settings, component: str) -> None:
    """Set up the root logger once per process."""
    root = logging.getLogger()
    if getattr(root, "_lessonbot_configured", False):
        return
    set_levels(settings.log_level)
    redact = RedactSecrets(configured_secrets(settings))
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    stderr.addFilter(redact)
    root.addHandler(stderr)
    if settings.log_dir is not None:
        Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
        # Watched: the log shipper rotates by renaming the file, and the next line goes to a fresh one.
        file_handler = logging.handlers.WatchedFileHandler(Path(settings.log_dir) / f"{component}.log", encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        file_handler.addFilter(redact)
        root.addHandler(file_handler)
    root._lessonbot_configured = True  # type: ignore[attr-defined]
