"""manage.py status: each dependency broken in turn shows as a failure with what to do, and exit 1."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from pydantic import SecretStr

from app import create_app
from app.backup.service import create_backup
from app.db import db, expected_revision, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.status.service import Level, Report, system_status
from app.workers.models import WorkerStatus, record_heartbeat
from app.zulip.models import DeadLetter
from tests.conftest import make_settings
from tests.google.conftest import GoogleWorld
from tests.pg import free_port
from tests.zulip_server.server import ZulipTestServer


def _plain(settings: Settings, **update: Any) -> Settings:
    """No Zulip, no Google, no backups: only what every install has."""
    return settings.model_copy(update={"google_client_id": None, "zulip_site": None, **update})


def _use(app: Flask, settings: Settings) -> Settings:
    app.extensions["lessonbot.settings"] = settings
    return settings


def _level(report: Report, name: str) -> Level:
    [check] = [c for c in report.checks if c.name == name]
    return check.level


def _beat(name: str, ago: timedelta = timedelta(0)) -> None:
    record_heartbeat(name, {})
    db.session.execute(sa.update(WorkerStatus).where(WorkerStatus.name == name).values(beat_at=utcnow() - ago))
    db.session.commit()


def test_a_healthy_minimal_install_is_all_good(app: Flask, runner: Any, settings: Settings) -> None:
    _use(app, _plain(settings))
    _beat("poller")
    _beat("dispatcher")
    result = runner.invoke(args=["status"])
    assert result.exit_code == 0, result.output
    assert "all good" in result.output
    report = system_status()
    assert report.ok and _level(report, "zulip") is Level.OFF and _level(report, "google") is Level.OFF


def test_an_unreachable_database_is_named_and_the_rest_still_reported(settings: Settings, tmp_path: Path) -> None:
    broken = make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", tmp_path / "git")
    app = create_app(_plain(broken))
    with app.app_context():
        report = system_status()
        db.session.remove()
    [database] = [c for c in report.checks if c.name == "database"]
    assert database.level is Level.FAIL and "unreachable" in database.detail and "DATABASE_URL" in database.fix
    assert [c.name for c in report.checks] == ["database", "lessons", "zulip", "google"]
    assert not report.ok


def test_a_schema_behind_the_release_says_db_upgrade(app: Flask, settings: Settings) -> None:
    _use(app, _plain(settings))
    _beat("poller")
    _beat("dispatcher")
    db.session.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    db.session.commit()
    try:
        [database] = [c for c in system_status().checks if c.name == "database"]
    finally:
        db.session.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": expected_revision()})
        db.session.commit()
    assert database.level is Level.FAIL and "expects" in database.detail and database.fix == "./manage.py db upgrade"


@pytest.mark.parametrize(("ago", "expected"), [(timedelta(seconds=5), Level.OK), (timedelta(minutes=5), Level.FAIL)])
def test_a_stale_worker_fails(app: Flask, settings: Settings, ago: timedelta, expected: Level) -> None:
    _use(app, _plain(settings))
    _beat("poller", ago)
    _beat("dispatcher")
    assert _level(system_status(), "worker poller") is expected


def test_a_worker_that_reports_an_error_fails_with_it(app: Flask, settings: Settings) -> None:
    _use(app, _plain(settings))
    _beat("poller")
    _beat("dispatcher")
    record_heartbeat("receiver", {"status": "error", "error": "Zulip refused the bot's API key (401)"})
    db.session.commit()
    [receiver] = [c for c in system_status().checks if c.name == "worker receiver"]
    assert receiver.level is Level.FAIL and "refused the bot's API key" in receiver.detail


def test_dead_letters_are_a_warning_with_the_command_to_see_them(app: Flask, settings: Settings) -> None:
    _use(app, _plain(settings))
    _beat("poller")
    _beat("dispatcher")
    db.session.add(DeadLetter(message_id=42, sender="s@example.com", content="?", reason="core answered 500", attempts=5))
    db.session.commit()
    report = system_status()
    [dead] = [c for c in report.checks if c.name == "dead letters"]
    assert dead.level is Level.WARN and dead.fix == "./manage.py deadletters list" and report.ok


def test_a_required_worker_that_never_started_fails(app: Flask, settings: Settings) -> None:
    _use(app, _plain(settings))
    [poller] = [c for c in system_status().checks if c.name == "worker poller"]
    assert poller.level is Level.FAIL and poller.detail == "never started" and "supervisorctl" in poller.fix


def test_failed_and_old_outbox_items_fail_their_kind(app: Flask, settings: Settings) -> None:
    _use(app, _plain(settings))
    _beat("poller")
    _beat("dispatcher")
    db.session.add(OutboxItem(kind=OutboxKind.GRADE, payload={}, status=OutboxStatus.FAILED, last_error="403"))
    db.session.add(OutboxItem(kind=OutboxKind.CHAT_REPLY, payload={}, created_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    report = system_status()
    assert _level(report, "outbox grade") is Level.FAIL and _level(report, "outbox chat_reply") is Level.FAIL
    assert _level(report, "outbox sheet_row") is Level.OK


def test_google_configured_but_never_authorized_fails(app: Flask, settings: Settings) -> None:
    _use(app, settings.model_copy(update={"zulip_site": None}))
    [google] = [c for c in system_status().checks if c.name == "google"]
    assert google.level is Level.FAIL and google.fix == "./manage.py google auth"


def test_google_authorized_is_ok_and_a_revoked_token_fails(app: Flask, settings: Settings, authorized: GoogleWorld) -> None:
    _use(app, settings.model_copy(update={"zulip_site": None}))
    assert _level(system_status(), "google") is Level.OK
    authorized.gs.revoke(authorized.refresh_token)
    [google] = [c for c in system_status().checks if c.name == "google"]
    assert google.level is Level.FAIL and "does not refresh" in google.detail


def test_zulip_with_a_wrong_key_fails_and_with_the_right_one_names_the_bot(
        zulip_app: Flask, zs: ZulipTestServer) -> None:
    settings: Settings = zulip_app.extensions["lessonbot.settings"]
    _use(zulip_app, settings.model_copy(update={"google_client_id": None}))
    [zulip] = [c for c in system_status().checks if c.name == "zulip"]
    assert zulip.level is Level.OK and "Lessonbot" in zulip.detail
    _use(zulip_app, settings.model_copy(update={"google_client_id": None, "zulip_api_key": SecretStr("wrong-key")}))
    [zulip] = [c for c in system_status().checks if c.name == "zulip"]
    assert zulip.level is Level.FAIL and zulip.fix == "./manage.py zulip check"


def test_backups_missing_fresh_and_too_old(app: Flask, settings: Settings, tmp_path: Path) -> None:
    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True).stdout.strip()
    configured = _use(app, _plain(settings, backup_age_recipients=(public,), backup_dir=tmp_path / "backups"))
    _beat("poller")
    _beat("dispatcher")
    assert _level(system_status(), "backups") is Level.FAIL
    create_backup(configured, db.engine, now=utcnow() - timedelta(hours=30))
    assert _level(system_status(), "backups") is Level.FAIL
    create_backup(configured, db.engine)
    assert _level(system_status(), "backups") is Level.OK


def test_json_output_and_exit_code_for_scripts(app: Flask, runner: Any, settings: Settings) -> None:
    _use(app, _plain(settings))
    result = runner.invoke(args=["status", "--json"])
    assert result.exit_code == 1  # the poller never beat
    report = json.loads(result.output)
    assert report["ok"] is False
    assert {"name": "worker poller", "level": "fail", "detail": "never started",
            "fix": "supervisorctl start lessonbot:poller"} in report["checks"]
