"""The log shipper: rotate, gzip, resumable upload to Drive, delete only what Drive confirmed; kills lose nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from app.db import db
from app.logship.files import Layout, load_state
from app.logship.shipper import LogShipper
from app.settings import Settings
from tests import lifetime
from tests.conftest import SECRETS
from tests.google.conftest import GoogleWorld
from tests.google_server import FaultKind, GoogleTestServer

ROOT = Path(__file__).resolve().parents[2]


def write_log(path: Path, megabytes: float, written: datetime | None = None) -> bytes:
    """JSON lines as the app writes them (stamped ``written``, default now), incompressible so that gzip stays big."""
    stamp = (written or datetime.now(UTC)).isoformat(timespec="milliseconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    size = 0
    while size < megabytes * 1024 * 1024:
        line = json.dumps({"time": stamp, "level": "INFO", "message": secrets.token_hex(200)})
        lines.append(line)
        size += len(line) + 1
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    return data


def drive_logs(gs: GoogleTestServer) -> list[dict[str, Any]]:
    return [f for f in gs.drive_files() if f["name"].endswith(".log.gz")]


def drive_text(gs: GoogleTestServer, file: dict[str, Any]) -> bytes:
    return gzip.decompress(gs.drive_content_path(file["id"]).read_bytes())


def _shipping(settings: Settings, gs: GoogleTestServer, folder: str | None = None) -> Settings:
    folder = folder or gs.add_drive_file("lessonbot-logs")
    return settings.model_copy(update={"google_drive_folder_id": folder})


def test_a_pass_rotates_compresses_uploads_and_deletes_after_confirmation(
        app: Flask, runner: Any, authorized: GoogleWorld, settings: Settings) -> None:
    gs = authorized.gs
    settings = _shipping(settings, gs)
    app.extensions["lessonbot.settings"] = settings
    data = write_log(Path(settings.log_dir or "") / "core.log", 1.5)
    status = runner.invoke(args=["logs", "status"])
    assert "core.log" in status.output and "live" in status.output

    result = runner.invoke(args=["logs", "ship"])
    assert result.exit_code == 0, result.output
    [shipped] = drive_logs(gs)
    assert shipped["parents"] == [settings.google_drive_folder_id] and shipped["name"].startswith("core.")
    assert drive_text(gs, shipped) == data
    layout = Layout(Path(settings.log_dir or ""))
    assert layout.waiting() == [] and not (layout.log_dir / "core.log").exists()
    assert load_state(layout).get("uploads") == {}
    assert gs.call_count("drive.upload.chunk") >= 3  # resumable, in 256 KiB chunks
    assert "0 file(s) waiting" in runner.invoke(args=["logs", "status"]).output


def test_rotation_waits_for_size_or_age(app: Flask, authorized: GoogleWorld, settings: Settings) -> None:
    settings = _shipping(settings, authorized.gs).model_copy(update={"log_rotate_bytes": 10 * 1024 * 1024})
    log_dir = Path(settings.log_dir or "")
    write_log(log_dir / "young.log", 0.01, written=datetime.now(UTC) - timedelta(hours=23))
    write_log(log_dir / "old.log", 0.01, written=datetime.now(UTC) - timedelta(hours=25))
    report = LogShipper(settings, grace_seconds=0).run_once()
    assert [p.name.split(".")[0] for p in report.rotated] == ["old"]
    assert (log_dir / "young.log").exists() and len(drive_logs(authorized.gs)) == 1


def test_shared_drive_and_a_lost_final_answer_give_exactly_one_copy(app: Flask, authorized: GoogleWorld,
                                                                   settings: Settings) -> None:
    gs = authorized.gs
    settings = _shipping(settings, gs, gs.add_shared_drive("Team logs")).model_copy(
        update={"log_upload_chunk_bytes": 4 * 1024 * 1024})
    data = write_log(Path(settings.log_dir or "") / "poller.log", 0.5)
    gs.faults.add("drive.upload.chunk", FaultKind.DROP_AFTER, times=1)  # Drive stores it, the answer is lost
    report = LogShipper(settings, grace_seconds=0, force_rotation=True, sleep=lambda s: None).run_once()
    assert report.errors == [] and len(report.shipped) == 1
    [shipped] = drive_logs(gs)
    assert shipped.get("driveId") == settings.google_drive_folder_id and drive_text(gs, shipped) == data


def test_an_upload_finished_before_a_kill_is_found_not_sent_again(app: Flask, authorized: GoogleWorld,
                                                                  settings: Settings) -> None:
    gs = authorized.gs
    settings = _shipping(settings, gs)
    shipper = LogShipper(settings, grace_seconds=0, force_rotation=True)
    write_log(Path(settings.log_dir or "") / "core.log", 0.2)
    from app.logship.shipper import PassReport

    shipper.prepare(PassReport())
    [waiting] = shipper.layout.waiting()
    gs.add_drive_file(waiting.name, waiting.read_bytes(), parent=settings.google_drive_folder_id)  # Drive has it
    gs.add_drive_file(waiting.name, b"truncated", parent=settings.google_drive_folder_id)  # and a bad copy
    report = shipper.run_once()
    assert list(report.shipped) == [waiting.name] and not waiting.exists()
    assert len(drive_logs(gs)) == 1 and gs.call_count("drive.upload.chunk") == 0


def _shipper_env(settings: Settings, database_url: str, gs: GoogleTestServer, lessons_dir: Path) -> dict[str, str]:
    return {
        **os.environ, "LESSONBOT_ENV_FILE": "/dev/null", "DATABASE_URL": database_url,
        **{f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()},
        "LESSONBOT_LOG_DIR": str(settings.log_dir), "LESSONBOT_LESSONS_DIR": str(lessons_dir),
        "LESSONBOT_GOOGLE_CLIENT_ID": settings.google_client_id or "",
        "LESSONBOT_GOOGLE_CLIENT_SECRET": secret.get_secret_value() if (secret := settings.google_client_secret) else "",
        "LESSONBOT_GOOGLE_API_ENDPOINT": gs.url, "LESSONBOT_GOOGLE_TOKEN_URI": gs.token_uri,
        "LESSONBOT_GOOGLE_DRIVE_FOLDER_ID": settings.google_drive_folder_id or "",
        "LESSONBOT_LOG_UPLOAD_CHUNK_BYTES": str(256 * 1024), "LESSONBOT_LOG_ROTATE_BYTES": "1000",
        "LESSONBOT_LOG_SHIP_INTERVAL_SECONDS": "30", "REQUESTS_CA_BUNDLE": str(gs.ca_file),
    }


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_shipper_killed_mid_upload_resumes_without_loss_or_duplicate(
        app: Flask, authorized: GoogleWorld, settings: Settings, database_url: str, lessons_dir: Path) -> None:
    gs = authorized.gs
    settings = _shipping(settings, gs)
    data = write_log(Path(settings.log_dir or "") / "core.log", 4)
    gs.faults.add("drive.upload.chunk", FaultKind.DELAY, times=None, delay=0.25)
    worker = lifetime.popen([sys.executable, "-m", "app.workers.log_shipper"], cwd=ROOT,
                            env=_shipper_env(settings, database_url, gs, lessons_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: gs.call_count("drive.upload.chunk") >= 4)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
    layout = Layout(Path(settings.log_dir or ""))
    [waiting] = layout.waiting()
    total = waiting.stat().st_size
    assert load_state(layout)["uploads"][waiting.name]["session"]  # the session survived the kill
    assert drive_logs(gs) == []

    gs.faults.clear()
    before = gs.call_count("drive.upload.chunk")
    report = LogShipper(settings, grace_seconds=0).run_once()
    assert report.errors == [], report.errors
    [shipped] = drive_logs(gs)
    assert int(shipped["size"]) == total
    assert hashlib.md5(gs.drive_content_path(shipped["id"]).read_bytes()).hexdigest() == shipped["md5Checksum"]
    shipped_lines = drive_text(gs, shipped)
    assert shipped_lines == data  # nothing lost (its own log lines went to log_shipper.log)
    resumed_chunks = gs.call_count("drive.upload.chunk") - before
    chunks = -(-total // (256 * 1024))
    assert resumed_chunks <= chunks - 2  # resumed (one status query + the rest), not started again
    assert layout.waiting() == []


def test_shipper_stops_cleanly_on_sigterm(app: Flask, authorized: GoogleWorld, settings: Settings, database_url: str,
                                          lessons_dir: Path) -> None:
    gs = authorized.gs
    settings = _shipping(settings, gs)
    write_log(Path(settings.log_dir or "") / "core.log", 0.3)
    worker = lifetime.popen([sys.executable, "-m", "app.workers.log_shipper"], cwd=ROOT,
                            env=_shipper_env(settings, database_url, gs, lessons_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(f["name"].startswith("core.") for f in drive_logs(gs)))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        worker.kill()
    assert worker.stderr is not None and b"log shipper stopped" in worker.stderr.read()


def test_health_sees_the_shipper_beat_and_go_stale_once_it_is_killed(
        app: Flask, authorized: GoogleWorld, settings: Settings, database_url: str, lessons_dir: Path) -> None:
    # Stale after 1 s x 6 + its 1 s interval; the shipper beats after every pass.
    settings = _shipping(settings, authorized.gs).model_copy(update={"worker_stale_seconds": 1, "log_ship_interval_seconds": 1})
    app.extensions["lessonbot.settings"] = settings
    client = app.test_client()

    def shipper() -> dict[str, Any]:
        db.session.rollback()
        body = client.get("/health").get_json()
        return {"degraded": "log_shipper" in body.get("degraded", []), **body["components"]["workers"]["log_shipper"]}

    assert shipper() == {"degraded": True, "status": "never_seen", "required": True}
    env = _shipper_env(settings, database_url, authorized.gs, lessons_dir) | {"LESSONBOT_LOG_SHIP_INTERVAL_SECONDS": "1"}
    worker = lifetime.popen([sys.executable, "-m", "app.workers.log_shipper"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: shipper()["status"] == "ok" and not shipper()["degraded"])
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        _wait_for(lambda: shipper()["status"] == "stale" and shipper()["degraded"])
    finally:
        worker.kill()


def test_logs_ship_without_a_folder_is_one_clear_line(app: Flask, runner: Any, authorized: GoogleWorld,
                                                       settings: Settings) -> None:
    write_log(Path(settings.log_dir or "") / "core.log", 0.01)
    result = runner.invoke(args=["logs", "ship"])
    assert result.exit_code == 1
    assert "LESSONBOT_GOOGLE_DRIVE_FOLDER_ID is not set" in result.output
