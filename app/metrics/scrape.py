"""What the core reads at scrape time rather than counts: the state in PostgreSQL, the backup manifest
and whether the Google authorization works.

Outbox depth and age, failed items, dead letters, active runs and worker heartbeats are
facts of the database, true whichever process changed them, so they are read when
Prometheus asks (every 30 s by default) instead of being counted on the hot path: one
short query each, every one served by a partial index (pending or failed outbox items,
active runs). A database that cannot be reached gives ``lessonbot_database_up 0`` and
none of the rest, never a failed scrape. The Google check refreshes the token at Google, so
each process makes it at most every ``GOOGLE_CHECK_SECONDS``, not at every scrape.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from app.backup.service import BackupError, BackupFolder
from app.db import db, utcnow
from app.google.client import google_status
from app.outbox.models import OutboxItem, OutboxStatus
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings
from app.workers.health import WorkerHealth, worker_states
from app.zulip.deadletters import count_dead_letters

log = logging.getLogger(__name__)
GOOGLE_CHECK_SECONDS = 300.0


class StateCollector(Collector):
    """The database's and the backups' state as gauges, read once per scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lessonbot_database_up", "Whether the core could read its state from PostgreSQL.")
        try:
            families = [*_outbox(), _failed(), _dead_letters(), _active_runs(), *_workers(self.settings),
                        *_google(self.settings)]
            up.add_metric([], 1)
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("metrics: database unavailable: %s", error.__class__.__name__)
            families = []
            up.add_metric([], 0)
        finally:
            db.session.remove()
        yield up
        yield from families
        yield from _backups(self.settings)


def _age(since: datetime | None) -> float:
    return max((utcnow() - since).total_seconds(), 0.0) if since is not None else 0.0


def _outbox() -> list[Metric]:
    depth = GaugeMetricFamily("lessonbot_outbox_pending", "Outbox items waiting to be delivered, by kind.",
                              labels=["kind"])
    oldest = GaugeMetricFamily("lessonbot_outbox_oldest_pending_age_seconds",
                               "Age of the oldest outbox item still waiting, by kind.", labels=["kind"])
    rows = db.session.execute(sa.select(OutboxItem.kind, sa.func.count(), sa.func.min(OutboxItem.created_at))
                              .where(OutboxItem.status == OutboxStatus.PENDING).group_by(OutboxItem.kind))
    for kind, count, first in rows:
        depth.add_metric([kind.value], count)
        oldest.add_metric([kind.value], _age(first))
    return [depth, oldest]


def _failed() -> Metric:
    failed = GaugeMetricFamily("lessonbot_outbox_failed", "Outbox items that failed for good, by kind "
                               "(grades list --failed, outbox list --failed).", labels=["kind"])
    rows = db.session.execute(sa.select(OutboxItem.kind, sa.func.count())
                              .where(OutboxItem.status == OutboxStatus.FAILED).group_by(OutboxItem.kind))
    for kind, count in rows:
        failed.add_metric([kind.value], count)
    return failed


def _dead_letters() -> Metric:
    return GaugeMetricFamily("lessonbot_dead_letters", "Zulip messages set aside (deadletters list).",
                             value=count_dead_letters())


def _active_runs() -> Metric:
    runs = GaugeMetricFamily("lessonbot_active_runs", "Lesson runs in progress, by lesson.", labels=["lesson"])
    rows = db.session.execute(sa.select(LessonRun.lesson_id, sa.func.count())
                              .where(LessonRun.status == RunStatus.ACTIVE).group_by(LessonRun.lesson_id))
    for lesson, count in rows:
        runs.add_metric([lesson], count)
    return runs


def _workers(settings: Settings) -> list[Metric]:
    healthy = GaugeMetricFamily("lessonbot_worker_healthy", "1 when the worker's heartbeat says it is doing its job "
                                "(what /health reports), by worker and whether it is required.",
                                labels=["worker", "required"])
    age = GaugeMetricFamily("lessonbot_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat.",
                            labels=["worker"])
    for worker in worker_states(settings):
        healthy.add_metric([worker.name, str(worker.required).lower()], int(worker.health is WorkerHealth.OK))
        if worker.seconds_since_beat is not None:
            age.add_metric([worker.name], worker.seconds_since_beat)
    return [healthy, age]


@dataclass
class GoogleCheck:
    """This process's last answer about the Google authorization (1 or 0), and when it was asked."""

    asked_at: float = -math.inf
    authorized: int | None = None


google_check = GoogleCheck()


def _google(settings: Settings) -> list[Metric]:
    """``status``'s Google check as a gauge: 1 when the stored authorization's token refreshes, 0 when
    there is none or Google refuses it (revoked, expired, the secret key changed: `google auth`).

    A refresh that failed on the way (network, Google's 5xx) says nothing about the authorization:
    the last answer stands, so an outage does not read as an authorization to redo.
    """
    if not settings.has_google_client:
        return []
    if time.monotonic() - google_check.asked_at >= GOOGLE_CHECK_SECONDS:
        google_check.asked_at = time.monotonic()
        answer = _ask_google(settings)
        if answer is not None:
            google_check.authorized = answer
    if google_check.authorized is None:
        return []
    return [GaugeMetricFamily("lessonbot_google_authorized", "1 when the stored Google authorization's token "
                              "refreshes (manage.py status, google); 0: none, or Google refuses it.",
                              value=google_check.authorized)]


def _ask_google(settings: Settings) -> int | None:
    """1 or 0 as above; None when the check got no answer about the authorization."""
    try:
        status = google_status(settings)
    except SQLAlchemyError:
        raise  # the database's failure: lessonbot_database_up 0
    except Exception as error:  # a check that cannot run is not a failed scrape
        log.warning("metrics: the Google check could not run: %s", error.__class__.__name__)
        return None
    if status is None:
        return 0
    return None if status.transient else int(status.refreshes)


def _backups(settings: Settings) -> Iterator[Metric]:
    """The newest backup and the newest one Drive verified, from the manifest the backup command keeps."""
    try:
        backups = BackupFolder(settings.backup_dir).load()
    except (BackupError, OSError) as error:
        log.warning("metrics: backup manifest unreadable: %s", error)
        return
    if not backups:
        return
    newest = max(backups.values(), key=lambda backup: backup.created_at)
    yield GaugeMetricFamily("lessonbot_backup_last_created_timestamp_seconds", "When the newest backup was taken.",
                            value=newest.created_at.timestamp())
    yield GaugeMetricFamily("lessonbot_backup_last_bytes", "Size of the newest backup (encrypted).", value=newest.size)
    verified = [backup for backup in backups.values() if backup.verified]
    if verified:
        last = max(verified, key=lambda backup: backup.created_at)
        yield GaugeMetricFamily("lessonbot_backup_last_verified_timestamp_seconds",
                                "When the newest backup that Drive confirmed (size and md5) was taken.",
                                value=last.created_at.timestamp())
