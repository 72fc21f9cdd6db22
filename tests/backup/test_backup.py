"""Backups: pg_dump → age → Drive (verified), retention, and a restore that finds the same rows.

Real PostgreSQL (pg_dump, pg_restore), Debian's age, and Drive through the Google client
libraries against the Google test server.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.backup.retention import to_keep
from app.backup.service import LOCK_KEY, BackupError, BackupFolder, create_backup, restore_backup, row_counts
from app.db import db, expected_revision
from app.settings import Settings
from tests.google.conftest import GoogleWorld
from tests.google_server import FaultKind
from tests.helpers import post_message
from tests.pg import empty_database as empty_database_at


@pytest.fixture
def age_keys(tmp_path: Path) -> tuple[str, Path]:
    """A fresh age key pair: (public key for the server, private key file ops would keep)."""
    identity = tmp_path / "ops-key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True).stdout.strip()
    return public, identity


@pytest.fixture
def backup_settings(app: Flask, settings: Settings, authorized: GoogleWorld, age_keys: tuple[str, Path],
                    tmp_path: Path) -> Settings:
    folder = authorized.gs.add_drive_file("lessonbot-backups")
    configured = settings.model_copy(update={"backup_age_recipients": (age_keys[0],), "backup_drive_folder_id": folder,
                                             "backup_dir": tmp_path / "backups"})
    app.extensions["lessonbot.settings"] = configured
    return configured


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    yield empty_database_at(database_url, "lessonbot_restore")


def _seed(client: FlaskClient, students: int) -> None:
    for number in range(students):
        email = f"s{number}@example.com"
        post_message(client, email, "start git-quiz")
        post_message(client, email, "git log" if number % 2 else "wrong answer")


def test_a_backup_is_encrypted_uploaded_verified_and_restores_the_same_rows(
        app: Flask, client: FlaskClient, backup_settings: Settings, authorized: GoogleWorld, age_keys: tuple[str, Path],
        database_url: str, empty_database: str) -> None:
    _seed(client, 12)
    before = row_counts(database_url)
    assert before["students"] == 12 and before["lesson_runs"] == 12

    backup = create_backup(backup_settings, db.engine)

    local = backup_settings.backup_dir / backup.name
    data = local.read_bytes()
    assert data.startswith(b"age-encryption.org/v1") and b"s3@example.com" not in data
    assert local.stat().st_mode & 0o777 == 0o600
    [remote] = [f for f in authorized.gs.drive_files() if f["name"] == backup.name]
    assert backup.verified and backup.drive_id == remote["id"]
    assert authorized.gs.drive_content_path(remote["id"]).read_bytes() == data

    report = restore_backup(backup_settings, local, age_keys[1], empty_database)

    assert report.revision == expected_revision()
    assert report.rows == before == row_counts(empty_database)


def test_restore_refuses_a_database_that_is_not_empty(backup_settings: Settings, age_keys: tuple[str, Path],
                                                      database_url: str) -> None:
    backup = create_backup(backup_settings, db.engine)
    with pytest.raises(BackupError, match="is not empty"):
        restore_backup(backup_settings, backup_settings.backup_dir / backup.name, age_keys[1], database_url)


def test_restore_with_the_wrong_key_says_so_and_leaves_the_database_empty(
        backup_settings: Settings, empty_database: str, tmp_path: Path) -> None:
    backup = create_backup(backup_settings, db.engine)
    stranger = tmp_path / "stranger.txt"
    subprocess.run(["age-keygen", "-o", str(stranger)], check=True, capture_output=True)
    with pytest.raises(BackupError, match=r"age --decrypt \| pg_restore failed: age exited 1: .*no identity matched"):
        restore_backup(backup_settings, backup_settings.backup_dir / backup.name, stranger, empty_database)
    assert row_counts(empty_database) == {}


def test_a_second_backup_while_one_runs_is_refused(backup_settings: Settings) -> None:
    holder = db.engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(:c, :k)"), {"c": LOCK_KEY[0], "k": LOCK_KEY[1]})
    try:
        with pytest.raises(BackupError, match="another backup is running"):
            create_backup(backup_settings, db.engine)
    finally:
        holder.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_KEY[0], "k": LOCK_KEY[1]})
        holder.close()
    assert not list(backup_settings.backup_dir.glob("*.age"))


def test_an_upload_broken_by_drive_errors_is_resumed_and_still_verified(
        backup_settings: Settings, authorized: GoogleWorld) -> None:
    authorized.gs.faults.add("drive.upload.chunk", FaultKind.SERVER_ERROR, times=2, status=500)
    authorized.gs.faults.add("drive.upload.chunk", FaultKind.DROP_AFTER, times=1)  # Drive stores it, the answer is lost
    backup = create_backup(backup_settings, db.engine)
    assert backup.verified
    assert [f["name"] for f in authorized.gs.drive_files()].count(backup.name) == 1


def test_retention_runs_only_after_a_verified_upload_and_deletes_both_copies(
        backup_settings: Settings, authorized: GoogleWorld) -> None:
    now = datetime.now(UTC)
    made = [create_backup(backup_settings, db.engine, now=now - timedelta(days=days)) for days in (40, 3, 2, 1)]
    # Keep 2 daily, 0 weekly, 0 monthly: the two newest stay, the older two go from disk and Drive.
    tight = backup_settings.model_copy(update={"backup_keep_daily": 2, "backup_keep_weekly": 0, "backup_keep_monthly": 0})
    newest = create_backup(tight, db.engine, now=now)
    names_on_drive = {f["name"] for f in authorized.gs.drive_files()}
    kept = {newest.name, made[3].name}
    assert {p.name for p in backup_settings.backup_dir.glob("*.age")} == kept
    assert {n for n in names_on_drive if n.endswith(".age")} == kept
    assert set(BackupFolder(backup_settings.backup_dir).load()) == kept


def test_without_drive_the_backup_stays_local_and_nothing_is_deleted(backup_settings: Settings) -> None:
    local_only = backup_settings.model_copy(update={"backup_drive_folder_id": None, "backup_keep_daily": 1,
                                                    "backup_keep_weekly": 0, "backup_keep_monthly": 0})
    now = datetime.now(UTC)
    first = create_backup(local_only, db.engine, now=now - timedelta(days=3))
    second = create_backup(local_only, db.engine, now=now)
    assert not first.verified and not second.verified
    assert {p.name for p in local_only.backup_dir.glob("*.age")} == {first.name, second.name}


@pytest.mark.parametrize(("update", "message"), [
    ({"backup_age_recipients": ()}, "LESSONBOT_BACKUP_AGE_RECIPIENTS is not set"),
    ({"database_url": "sqlite:///x.sqlite3"}, "backups need PostgreSQL"),
])
def test_misconfiguration_is_one_clear_sentence(backup_settings: Settings, update: dict[str, Any], message: str) -> None:
    with pytest.raises(BackupError, match=message):
        create_backup(backup_settings.model_copy(update=update), db.engine)


def test_the_cli_creates_lists_and_restores_with_one_line_errors(
        runner: Any, backup_settings: Settings, age_keys: tuple[str, Path], empty_database: str, tmp_path: Path) -> None:
    created = runner.invoke(args=["backup", "create"])
    assert created.exit_code == 0, created.output
    name = created.output.split()[1].rstrip(":")
    listed = runner.invoke(args=["backup", "list"])
    assert listed.exit_code == 0 and name in listed.output
    missing = runner.invoke(args=["backup", "restore", name, "--identity", str(tmp_path / "nope.txt"),
                                  "--database", empty_database])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    restored = runner.invoke(args=["backup", "restore", str(backup_settings.backup_dir / name),
                                   "--identity", str(age_keys[1]), "--database", empty_database])
    assert restored.exit_code == 0, restored.output
    assert f"at migration {expected_revision()}" in restored.output


def test_concurrent_creates_make_exactly_one_backup(backup_settings: Settings, app: Flask) -> None:
    results: list[object] = []

    def attempt() -> None:
        with app.app_context():
            try:
                results.append(create_backup(backup_settings, db.engine, now=datetime.now(UTC)))
            except BackupError as error:
                results.append(error)

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    made = [r for r in results if not isinstance(r, BackupError)]
    refused = [r for r in results if isinstance(r, BackupError)]
    assert len(results) == 3 and len(made) >= 1
    assert all("another backup is running" in str(r) for r in refused)


R = datetime(2026, 6, 15, 12, tzinfo=UTC)  # a reference point; the rule is pure, no clock involved


@pytest.mark.parametrize(("ages_in_days", "daily", "weekly", "monthly", "kept_ages"), [
    ([0, 1, 2, 3], 2, 0, 0, [0, 1]),
    ([0, 0.1, 0.2], 7, 0, 0, [0]),  # several on one day: the newest of the day
    ([0, 10, 20], 7, 0, 0, [0, 10, 20]),  # days without a backup do not count
    ([0, 1, 8, 15, 40], 1, 3, 0, [0, 1, 8]),  # R is a Monday: 1 day back is the week before
    ([0, 1, 40, 70, 100], 1, 0, 3, [0, 40, 70]),
    ([], 7, 4, 6, []),
])
def test_retention_keeps_the_newest_of_each_day_week_and_month(
        ages_in_days: list[float], daily: int, weekly: int, monthly: int, kept_ages: list[float]) -> None:
    backups = {f"b{age}": R - timedelta(days=age) for age in ages_in_days}
    assert to_keep(backups, R, daily=daily, weekly=weekly, monthly=monthly) == {f"b{age}" for age in kept_ages}


def test_a_backup_from_the_future_is_never_deleted() -> None:
    backups = {"future": R + timedelta(days=1), "now": R}
    assert to_keep(backups, R, daily=1, weekly=0, monthly=0) == {"future", "now"}
