"""One shipping pass: rotate what is due, compress what was rotated, upload what is compressed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.db import utcnow
from app.google.client import GoogleError
from app.logship.drive import DriveUploader, Progress, ShipError
from app.logship.files import Layout, compress, load_state, rotate
from app.metrics.registry import LOG_SHIPPED_BYTES, LOG_SHIPPED_FILES
from app.settings import Settings

log = logging.getLogger(__name__)


class NotConfigured(Exception):
    """LESSONBOT_LOG_DIR or LESSONBOT_GOOGLE_DRIVE_FOLDER_ID is not set."""


@dataclass
class PassReport:
    rotated: list[Path] = field(default_factory=list)
    compressed: list[Path] = field(default_factory=list)
    shipped: dict[str, str] = field(default_factory=dict)  # file name → Drive id
    errors: list[str] = field(default_factory=list)

    @property
    def did_work(self) -> bool:
        return bool(self.rotated or self.compressed or self.shipped)


def layout_for(settings: Settings) -> Layout:
    if settings.log_dir is None:
        raise NotConfigured("LESSONBOT_LOG_DIR is not set: there are no log files to ship")
    return Layout(Path(settings.log_dir))


class LogShipper:
    def __init__(self, settings: Settings, *, grace_seconds: float = 1.0, force_rotation: bool = False,
                 sleep: Callable[[float], None] = time.sleep, stopping: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.layout = layout_for(settings)
        self.grace_seconds = grace_seconds  # let writers notice the rename before compressing
        self.force_rotation = force_rotation
        self.sleep = sleep
        self.stopping = stopping

    def prepare(self, report: PassReport) -> None:
        """Rotate and compress (no network)."""
        max_bytes = 1 if self.force_rotation else self.settings.log_rotate_bytes
        report.rotated = rotate(self.layout, max_bytes, self.settings.log_rotate_hours, utcnow())
        if report.rotated and self.grace_seconds:
            self.sleep(self.grace_seconds)
        for path in self.layout.rotated():
            report.compressed.append(compress(path))

    def run_once(self, progress: Progress = lambda n: None, on_file: Callable[[Path], None] = lambda p: None) -> PassReport:
        """One pass; an error with one file is reported and leaves it for the next pass."""
        report = PassReport()
        self.prepare(report)
        waiting = self.layout.waiting()
        if not waiting:
            return report
        folder = self.settings.google_drive_folder_id
        if not folder:
            raise NotConfigured("LESSONBOT_GOOGLE_DRIVE_FOLDER_ID is not set: logs wait in " + str(self.layout.outgoing))
        uploader = DriveUploader(self.settings, self.layout, folder, self.sleep)
        for path in waiting:
            if self.stopping():
                break
            on_file(path)
            try:
                size = path.stat().st_size
                report.shipped[path.name] = uploader.ship(path, progress)
                LOG_SHIPPED_FILES.inc()
                LOG_SHIPPED_BYTES.inc(size)
            except (ShipError, GoogleError) as error:
                log.warning("log %s not shipped: %s", path.name, error, extra={"file": path.name})
                report.errors.append(f"{path.name}: {error}")
        return report


@dataclass(frozen=True)
class Waiting:
    name: str
    size: int
    uploaded_session: bool


def waiting_files(settings: Settings) -> list[Waiting]:
    """What is waiting in outgoing/ (rotated or compressed), and whether an upload is under way."""
    layout = layout_for(settings)
    uploads = load_state(layout).get("uploads", {})
    files = [*layout.rotated(), *layout.waiting()] if layout.outgoing.exists() else []
    return [Waiting(p.name, p.stat().st_size, bool(uploads.get(p.name, {}).get("session"))) for p in files]


def live_files(settings: Settings) -> list[tuple[str, int]]:
    layout = layout_for(settings)
    return [(p.name, p.stat().st_size) for p in layout.live_logs()]
