"""Logging: readable lines on stderr and, when LESSONBOT_LOG_DIR is set, JSON lines in a file."""

from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path

from app.settings import Settings

_RESERVED = set(vars(logging.makeLogRecord({})))


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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(settings: Settings, component: str) -> None:
    """Set up the root logger once per process."""
    root = logging.getLogger()
    if getattr(root, "_lessonbot_configured", False):
        return
    root.setLevel(settings.log_level)
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    root.addHandler(stderr)
    if settings.log_dir is not None:
        Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
        # Watched: the log shipper rotates by renaming the file, and the next line goes to a fresh one.
        file_handler = logging.handlers.WatchedFileHandler(Path(settings.log_dir) / f"{component}.log", encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        root.addHandler(file_handler)
    root._lessonbot_configured = True  # type: ignore[attr-defined]
