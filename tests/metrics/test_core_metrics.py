"""The core's /metrics: what it counts per request and message, and what it reads at scrape time."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from flask.testing import FlaskClient

from app.backup.service import Backup, BackupFolder
from app.db import db, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.workers.models import record_heartbeat
from app.zulip.models import DeadLetter
from tests.helpers import post_message
from tests.metrics.scrape import samples, value


def scrape(client: FlaskClient) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    return samples(answer.get_data(as_text=True))


def test_requests_are_counted_by_endpoint_and_status_and_timed(client: FlaskClient) -> None:
    before = scrape(client)
    for _ in range(3):
        client.get("/health")
    client.get("/no/such/page")
    after = scrape(client)
    health = {"endpoint": "health.health", "method": "GET"}
    assert value(after, "lessonbot_http_requests_total", **health, status="503") - value(
        before, "lessonbot_http_requests_total", **health, status="503") == 3  # no worker beats in this test
    assert value(after, "lessonbot_http_requests_total", endpoint="unmatched", method="GET", status="404") - value(
        before, "lessonbot_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(after, "lessonbot_http_request_duration_seconds_count", endpoint="health.health") - value(
        before, "lessonbot_http_request_duration_seconds_count", endpoint="health.health") == 3


def test_messages_duplicates_and_queued_replies_are_counted(client: FlaskClient) -> None:
    before = scrape(client)
    post_message(client, "ann@example.com", "help", message_id="m-1")
    post_message(client, "ann@example.com", "help", message_id="m-1")  # the receiver's retry
    post_message(client, "bob@example.com", "help", message_id="m-2")
    after = scrape(client)
    assert value(after, "lessonbot_messages_received_total") - value(before, "lessonbot_messages_received_total") == 2
    assert value(after, "lessonbot_messages_duplicate_total") - value(before, "lessonbot_messages_duplicate_total") == 1
    assert value(after, "lessonbot_replies_queued_total") - value(before, "lessonbot_replies_queued_total") == 2


def test_outbox_runs_dead_letters_and_workers_are_read_at_scrape_time(client: FlaskClient) -> None:
    post_message(client, "ann@example.com", "start git-basics")
    post_message(client, "bob@example.com", "start git-basics")
    db.session.add(OutboxItem(kind=OutboxKind.GRADE, payload={}, status=OutboxStatus.PENDING,
                              created_at=utcnow() - timedelta(minutes=10)))
    db.session.add(OutboxItem(kind=OutboxKind.GRADE, payload={}, status=OutboxStatus.FAILED))
    db.session.add(OutboxItem(kind=OutboxKind.GRADE, payload={}, status=OutboxStatus.SENT,
                              created_at=utcnow() - timedelta(days=3)))  # history: not waiting
    db.session.add(DeadLetter(message_id=77, sender="x@example.com", content="?", reason="500", attempts=5))
    record_heartbeat("poller", {})
    db.session.commit()

    scraped = scrape(client)
    assert value(scraped, "lessonbot_database_up") == 1
    assert value(scraped, "lessonbot_active_runs", lesson="git-basics") == 2
    assert value(scraped, "lessonbot_outbox_pending", kind="chat_reply") == 2
    assert value(scraped, "lessonbot_outbox_pending", kind="grade") == 1
    assert 600 <= value(scraped, "lessonbot_outbox_oldest_pending_age_seconds", kind="grade") < 700
    assert value(scraped, "lessonbot_outbox_failed", kind="grade") == 1
    assert value(scraped, "lessonbot_dead_letters") == 1
    assert value(scraped, "lessonbot_worker_healthy", worker="poller", required="true") == 1
    assert value(scraped, "lessonbot_worker_heartbeat_age_seconds", worker="poller") < 60


def test_the_newest_verified_backup_is_read_from_the_manifest(client: FlaskClient, tmp_path: Path) -> None:
    settings = client.application.extensions["lessonbot.settings"]
    client.application.extensions["lessonbot.settings"] = settings.model_copy(update={"backup_dir": tmp_path})
    folder = BackupFolder(tmp_path)
    verified_at, newest_at = utcnow() - timedelta(days=1), utcnow() - timedelta(hours=1)
    folder.save({"a": Backup("a", verified_at.isoformat(), 1000, "md5a", verified=True),
                 "b": Backup("b", newest_at.isoformat(), 2048, "md5b", verified=False)})
    scraped = scrape(client)
    assert value(scraped, "lessonbot_backup_last_created_timestamp_seconds") == newest_at.timestamp()
    assert value(scraped, "lessonbot_backup_last_bytes") == 2048
    assert value(scraped, "lessonbot_backup_last_verified_timestamp_seconds") == verified_at.timestamp()
    assert json.loads(folder.manifest.read_text())  # the scrape only read it


def test_without_a_google_client_there_is_no_google_series(client: FlaskClient) -> None:
    assert not [name for name, _ in scrape(client) if name.startswith("lessonbot_google")]


def test_metrics_answer_loopback_callers_only(client: FlaskClient) -> None:
    answer = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert answer.status_code == 403
    assert answer.get_json()["message"] == "/metrics answers loopback callers only."
