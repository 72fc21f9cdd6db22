"""Rotating and compressing log files, and the shipper's state file (replaced atomically)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

OUTGOING = "outgoing"
STATE_FILE = ".shipper-state.json"
COPY_BLOCK = 1024 * 1024


class StateLocation(Protocol):
    """Where an uploader keeps its state file (the log shipper's outgoing folder, the backup folder)."""

    @property
    def outgoing(self) -> Path: ...

    @property
    def state_file(self) -> Path: ...


@dataclass(frozen=True)
class Layout:
    log_dir: Path

    @property
    def outgoing(self) -> Path:
        return self.log_dir / OUTGOING

    @property
    def state_file(self) -> Path:
        return self.outgoing / STATE_FILE

    def live_logs(self) -> list[Path]:
        return sorted(p for p in self.log_dir.glob("*.log") if p.is_file())

    def rotated(self) -> list[Path]:
        return sorted(self.outgoing.glob("*.log"))

    def waiting(self) -> list[Path]:
        """Compressed files waiting to be uploaded, oldest first."""
        return sorted(self.outgoing.glob("*.log.gz"))


def _first_line_time(path: Path) -> datetime | None:
    try:
        with path.open("rb") as handle:
            line = handle.readline(64 * 1024)
        return datetime.fromisoformat(json.loads(line)["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def needs_rotation(path: Path, max_bytes: int, max_hours: float, now: datetime) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    if size >= max_bytes:
        return True
    started = _first_line_time(path) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return (now - started).total_seconds() >= max_hours * 3600


def rotate(layout: Layout, max_bytes: int, max_hours: float, now: datetime) -> list[Path]:
    """Rename each log that is big or old enough into outgoing/ (writers reopen on their next line)."""
    layout.outgoing.mkdir(parents=True, exist_ok=True)
    rotated = []
    for path in layout.live_logs():
        if needs_rotation(path, max_bytes, max_hours, now):
            stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
            target = layout.outgoing / f"{path.stem}.{socket.gethostname()}.{stamp}.log"
            os.replace(path, target)
            rotated.append(target)
    return rotated


def compress(path: Path, level: int = 3) -> Path:
    """path.log → path.log.gz, streamed; the plain file goes only after the gzip is durably in place."""
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(path.name + ".gz.part")
    with path.open("rb") as source, partial.open("wb") as raw:
        # mtime=0 and no name: the same log always gives the same bytes (a restarted compression too).
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as out:
            shutil.copyfileobj(source, out, COPY_BLOCK)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, target)
    path.unlink()
    return target


def digest(path: Path) -> tuple[int, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK):
            md5.update(block)
            size += len(block)
    return size, md5.hexdigest()


def load_state(layout: StateLocation) -> dict[str, Any]:
    try:
        return dict(json.loads(layout.state_file.read_text()))
    except (OSError, ValueError):
        return {}


def save_state(layout: StateLocation, state: dict[str, Any]) -> None:
    """Write the whole state to a temporary file, fsync, rename: a kill leaves the old or the new state."""
    layout.outgoing.mkdir(parents=True, exist_ok=True)
    temporary = layout.state_file.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, layout.state_file)
