"""How each worker is doing, from its heartbeat: one reading for ``/health`` and ``manage.py status``.

Every worker writes a heartbeat row after each pass (the dispatcher's tells how many of
its threads are alive). A worker is *stale* when its last beat is older than the longest pass it
may honestly take, *dead* when it says some of its threads are not running, *error* when
it is alive but stuck on something (a refused key, Zulip down), *never_seen* when it
never beat at all. Which workers are required follows the settings: the poller and the
outbox dispatcher always, the receiver when Zulip is configured, the log shipper when log
shipping is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.settings import Settings
from app.workers.models import WorkerStatus

REPORTED = ("error", "errors", "alive", "threads", "restarts")  # what a heartbeat may tell /health
SHIPPER_UPLOAD_ALLOWANCE = 5  # times worker_stale_seconds: one upload of a large log may take minutes


class WorkerHealth(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    STALE = "stale"
    DEAD = "dead"
    NEVER_SEEN = "never_seen"


@dataclass(frozen=True)
class WorkerState:
    name: str
    health: WorkerHealth
    required: bool
    seconds_since_beat: float | None
    stale_after: timedelta
    info: dict[str, Any]

    @property
    def program(self) -> str:
        """The supervisor program to look at: each worker is its own."""
        return self.name

    @property
    def degrades(self) -> bool:
        """Whether this state makes the whole system degraded (a required worker not doing its job)."""
        return self.required and self.health is not WorkerHealth.OK

    def report(self) -> dict[str, object]:
        """For /health: the state, the age of the beat and what the worker told about itself."""
        body: dict[str, object] = {"status": self.health.value, "required": self.required}
        if self.seconds_since_beat is not None:
            body["seconds_since_beat"] = round(self.seconds_since_beat, 1)
        return body | {key: self.info[key] for key in REPORTED if self.info.get(key) is not None}


def required_workers(settings: Settings) -> list[str]:
    """The workers that must beat: the poller and the dispatcher always, the others when their feature is on."""
    required = ["dispatcher", "poller"]
    if settings.zulip_site:
        required.append("receiver")
    if settings.log_dir and settings.google_drive_folder_id:
        required.append("log_shipper")
    return required


def stale_after(settings: Settings, name: str) -> timedelta:
    """How long a worker may go without a beat before it is stale.

    ``worker_stale_seconds`` covers a poller pass and the receiver's long-poll (Zulip sends
    a heartbeat event every 45 s) with a retry-after on top; the log shipper beats only
    between uploads, and one upload of a large log may take minutes.
    """
    limit = timedelta(seconds=settings.worker_stale_seconds)
    if name == "log_shipper":
        return limit * (1 + SHIPPER_UPLOAD_ALLOWANCE) + timedelta(seconds=settings.log_ship_interval_seconds)
    return limit


def worker_states(settings: Settings) -> list[WorkerState]:
    """Every required worker and every worker that ever beat, by name."""
    beats = {row.name: row for row in db.session.scalars(sa.select(WorkerStatus))}
    required = set(required_workers(settings))
    now = utcnow()
    states = []
    for name in sorted(required | set(beats)):
        limit = stale_after(settings, name)
        row = beats.get(name)
        if row is None:
            states.append(WorkerState(name, WorkerHealth.NEVER_SEEN, name in required, None, limit, {}))
            continue
        age = (now - row.beat_at).total_seconds()
        info = row.info or {}
        states.append(WorkerState(name, _health(age, limit, info), name in required, age, limit, info))
    return states


def _health(age: float, limit: timedelta, info: dict[str, Any]) -> WorkerHealth:
    if age > limit.total_seconds():
        return WorkerHealth.STALE
    if isinstance(info.get("alive"), int) and isinstance(info.get("threads"), int) and info["alive"] < info["threads"]:
        return WorkerHealth.DEAD
    if info.get("status") == "error":
        return WorkerHealth.ERROR
    return WorkerHealth.OK
