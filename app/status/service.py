"""One report of what is wrong: the database, lessons, Zulip, Google, workers, outbox, backups.

``system_status()`` runs every check and never raises: a check that cannot run is itself
a failure with its reason. ``manage.py status`` prints it (``--json`` for scripts) and
exits 1 when anything failed; admins in chat get the same report.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from app import current
from app.db import db, expected_revision, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.workers.health import WorkerHealth, worker_states

log = logging.getLogger(__name__)
OUTBOX_MAX_AGE = timedelta(minutes=10)
BACKUP_MAX_AGE = timedelta(hours=26)


class Level(enum.StrEnum):
    OK = "ok"
    OFF = "off"  # not configured: nothing is wrong, nothing is checked
    WARN = "warn"
    FAIL = "fail"


@dataclass
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.level is not Level.FAIL for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}


def system_status(settings: Settings | None = None) -> Report:
    """Every check, in the order an admin reads them; the database first, since most need it."""
    settings = settings or current.settings()
    report = Report()
    database = _guard("database", lambda: _database())
    report.checks.append(database)
    report.checks.append(Check("lessons", Level.OK, f"{len(current.catalog())} loaded"))
    report.checks.append(_guard("zulip", lambda: _zulip(settings)))
    report.checks.append(_guard("google", lambda: _google(settings)))
    if database.level is Level.FAIL:
        return report  # the rest reads the database
    report.checks.extend(_guard_many("workers", lambda: _workers(settings)))
    report.checks.extend(_guard_many("outbox", _outbox))
    report.checks.append(_guard("dead letters", _dead_letters))
    report.checks.append(_guard("backups", lambda: _backups(settings)))
    return report


def _guard(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as error:  # a check that cannot run is a finding, not a crash
        db.session.rollback()
        log.warning("status check %s could not run: %s", name, error.__class__.__name__)
        return Check(name, Level.FAIL, f"the check itself failed: {_sentence(error)}")


def _guard_many(name: str, checks: Callable[[], list[Check]]) -> list[Check]:
    try:
        return checks()
    except Exception as error:
        db.session.rollback()
        return [Check(name, Level.FAIL, f"the check itself failed: {_sentence(error)}")]


def _sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else error.__class__.__name__)[:300]


# --- the checks --------------------------------------------------------------------------------


def _database() -> Check:
    try:
        revision = db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as error:
        db.session.rollback()
        reason = _sentence(getattr(error, "orig", None) or error)
        if "alembic_version" in reason:
            return Check("database", Level.FAIL, "reachable, but it has no tables yet", "./manage.py db upgrade")
        return Check("database", Level.FAIL, f"unreachable: {reason}", "check DATABASE_URL and that PostgreSQL runs")
    expected = expected_revision()
    if revision != expected:
        return Check("database", Level.FAIL, f"schema at migration {revision}, this release expects {expected}",
                     "./manage.py db upgrade")
    return Check("database", Level.OK, f"{db.engine.dialect.name}, migration {revision} (current)")


def _zulip(settings: Settings) -> Check:
    from app.zulip.api import ZulipError
    from app.zulip.connect import describe_bot

    if not settings.zulip_site:
        return Check("zulip", Level.OFF, "not configured (LESSONBOT_ZULIP_SITE unset)")
    try:
        lines = describe_bot(settings)
    except ZulipError as error:
        return Check("zulip", Level.FAIL, f"{settings.zulip_site}: {_sentence(error)}", "./manage.py zulip check")
    return Check("zulip", Level.OK, "; ".join(line.split(":", 1)[1].strip() for line in lines))


def _google(settings: Settings) -> Check:
    from app.google.client import google_status

    if not settings.google_client_id:
        return Check("google", Level.OFF, "not configured (LESSONBOT_GOOGLE_CLIENT_ID unset)")
    status = google_status(settings)
    if status is None:
        return Check("google", Level.FAIL, "not authorized yet: grades, sheets, logs and backups cannot leave",
                     "./manage.py google auth")
    if not status.refreshes:
        return Check("google", Level.FAIL, f"{status.email}: the token does not refresh: {status.problem}",
                     "./manage.py google auth")
    return Check("google", Level.OK, f"{status.email}, {len(status.scopes)} scopes, token refreshes")


FIXES = {
    WorkerHealth.NEVER_SEEN: "supervisorctl start lessonbot:{name}",
    WorkerHealth.STALE: "supervisorctl status lessonbot:{name}; its log in /var/log/supervisor/",
    WorkerHealth.DEAD: "see its log for why its threads ended; supervisorctl restart lessonbot:{name}",
    WorkerHealth.ERROR: "see its log; fix the cause",
}


def _workers(settings: Settings) -> list[Check]:
    checks = []
    for worker in worker_states(settings):
        name = f"worker {worker.name}"
        if worker.seconds_since_beat is None:
            checks.append(Check(name, Level.FAIL, "never started", FIXES[worker.health].format(name=worker.program)))
            continue
        detail = f"last heartbeat {worker.seconds_since_beat:.0f} s ago"
        if worker.health is WorkerHealth.DEAD:
            detail += f", {worker.info.get('alive')} of {worker.info.get('threads')} threads running"
        elif worker.health is WorkerHealth.ERROR:
            detail += f", stuck on: {worker.info.get('error') or '; '.join(worker.info.get('errors') or [])}"
        if worker.health is WorkerHealth.OK:
            checks.append(Check(name, Level.OK, detail))
        else:
            checks.append(Check(name, Level.FAIL, detail, FIXES[worker.health].format(name=worker.program)))
    return checks


def _outbox() -> list[Check]:
    rows = db.session.execute(
        sa.select(OutboxItem.kind, OutboxItem.status, sa.func.count(), sa.func.min(OutboxItem.created_at))
        .where(OutboxItem.status.in_((OutboxStatus.PENDING, OutboxStatus.FAILED)))  # partial indexes, not history
        .group_by(OutboxItem.kind, OutboxItem.status)).all()
    found = {(kind, status): (count, oldest) for kind, status, count, oldest in rows}
    now, checks = utcnow(), []
    for kind in OutboxKind:
        pending, oldest = found.get((kind, OutboxStatus.PENDING), (0, None))
        failed, _ = found.get((kind, OutboxStatus.FAILED), (0, None))
        age = (now - oldest) if oldest else timedelta(0)
        oldest_text = f" (oldest {age.total_seconds() / 60:.0f} min)" if pending else ""
        detail = f"{pending} pending{oldest_text}, {failed} failed"
        if failed:
            checks.append(Check(f"outbox {kind.value}", Level.FAIL, detail, f"./manage.py outbox list --failed ({kind.value})"))
        elif age > OUTBOX_MAX_AGE:
            checks.append(Check(f"outbox {kind.value}", Level.FAIL, detail, "is the dispatcher running? ./manage.py outbox list"))
        else:
            checks.append(Check(f"outbox {kind.value}", Level.OK, detail))
    return checks


def _dead_letters() -> Check:
    from app.zulip.deadletters import count_dead_letters

    count = count_dead_letters()
    if count:
        return Check("dead letters", Level.WARN, f"{count} message(s) the core could not take (each student got an apology)",
                     "./manage.py deadletters list")
    return Check("dead letters", Level.OK, "none")


def _backups(settings: Settings) -> Check:
    from app.backup.service import list_backups

    if not settings.backup_age_recipients:
        return Check("backups", Level.OFF, "not configured (LESSONBOT_BACKUP_AGE_RECIPIENTS unset)")
    backups = list_backups(settings)
    verified = [b for b in backups if b.verified or not settings.backup_drive_folder_id]
    if not verified:
        return Check("backups", Level.FAIL, "no backup yet", "./manage.py backup create")
    age = utcnow() - verified[0].created_at
    hours = age.total_seconds() / 3600
    if age > BACKUP_MAX_AGE:
        return Check("backups", Level.FAIL, f"the newest good backup is {hours:.0f} h old",
                     "systemctl status lessonbot-backup.service")
    return Check("backups", Level.OK, f"newest {verified[0].name}, {hours:.1f} h old")
