"""GET /health: the database, every worker and the other components; 503 when something needs an admin.

The heartbeats here are real rows written by record_heartbeat, dated back where a test needs
a worker that went quiet; tests/zulip/test_worker_health.py stops the real worker processes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.db import db, utcnow
from app.settings import Settings
from app.workers.models import WorkerStatus, record_heartbeat
from tests.conftest import make_settings
from tests.pg import end_sessions, free_port

ZULIP = {"zulip_site": "http://127.0.0.1:9", "zulip_email": "bot@example.com", "zulip_api_key": "k"}


def _use(app: Flask, settings: Settings, **update: Any) -> None:
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"zulip_site": None, **update})


def _beat(name: str, info: dict[str, Any] | None = None, ago: timedelta = timedelta(0)) -> None:
    record_heartbeat(name, info or {})
    db.session.execute(sa.update(WorkerStatus).where(WorkerStatus.name == name).values(beat_at=utcnow() - ago))
    db.session.commit()


def _get(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/health")
    return response.status_code, response.get_json()


def test_health_reports_components(app: Flask, client: FlaskClient, settings: Settings) -> None:
    _use(app, settings)
    _beat("poller")
    _beat("dispatcher")
    status, body = _get(client)
    assert status == 200 and body["status"] == "ok"
    assert body["components"]["database"] == {"status": "ok", "dialect": "postgresql"}
    assert body["components"]["lessons"]["count"] >= 1
    assert body["components"]["outbox"]["pending"] == 0
    poller = body["components"]["workers"]["poller"]
    assert poller["status"] == "ok" and poller["required"] is True and poller["seconds_since_beat"] < 5


def test_a_worker_that_never_started_is_degraded(app: Flask, client: FlaskClient, settings: Settings) -> None:
    _use(app, settings)
    status, body = _get(client)
    assert status == 503 and body["status"] == "degraded" and body["degraded"] == ["dispatcher", "poller"]
    assert body["components"]["workers"]["poller"] == {"status": "never_seen", "required": True}


def test_a_quiet_worker_turns_stale_after_the_configured_time(app: Flask, client: FlaskClient, settings: Settings) -> None:
    _use(app, settings, worker_stale_seconds=30)
    _beat("dispatcher")
    _beat("poller", ago=timedelta(seconds=20))
    assert _get(client)[0] == 200
    _beat("poller", ago=timedelta(seconds=40))
    status, body = _get(client)
    assert status == 503 and body["degraded"] == ["poller"]
    assert body["components"]["workers"]["poller"]["status"] == "stale"


def test_with_zulip_the_receiver_is_required(app: Flask, client: FlaskClient,
                                                                    settings: Settings) -> None:
    _use(app, settings, **ZULIP)
    _beat("poller")
    _beat("dispatcher")
    status, body = _get(client)
    assert status == 503 and body["degraded"] == ["receiver"]
    _beat("receiver", {"status": "ok", "last_message_id": 7})
    assert _get(client)[0] == 200


@pytest.mark.parametrize(("name", "info", "health"), [
    ("dispatcher", {"status": "ok", "errors": [], "alive": 3, "threads": 4, "restarts": 2}, "dead"),
    ("receiver", {"status": "error", "error": "Zulip refused the bot's email or API key (401)"}, "error"),
])
def test_dead_threads_or_a_stuck_worker_are_degraded_and_say_why(
        app: Flask, client: FlaskClient, settings: Settings, name: str, info: dict[str, Any], health: str) -> None:
    _use(app, settings, **ZULIP)
    for worker in ("dispatcher", "poller", "receiver"):
        _beat(worker, {"status": "ok", "alive": 4, "threads": 4})
    _beat(name, info)
    status, body = _get(client)
    assert status == 503 and body["degraded"] == [name]
    reported = body["components"]["workers"][name]
    assert reported["status"] == health and {key: reported[key] for key in info if key != "status"} == {
        key: value for key, value in info.items() if key != "status"}


def test_the_log_shipper_counts_only_when_log_shipping_is_configured(app: Flask, client: FlaskClient, settings: Settings,
                                                                     tmp_path: Path) -> None:
    _use(app, settings)
    _beat("poller")
    _beat("dispatcher")
    assert "log_shipper" not in _get(client)[1]["components"]["workers"]
    _use(app, settings, log_dir=tmp_path, google_drive_folder_id="folder-1", log_ship_interval_seconds=60)
    status, body = _get(client)
    assert status == 503 and body["degraded"] == ["log_shipper"]
    # An upload may take minutes: the shipper is stale only after ten of them on top of the usual limit.
    _beat("log_shipper", {"shipped": 0, "errors": []}, ago=timedelta(minutes=12))
    assert _get(client)[0] == 200
    _beat("log_shipper", {"shipped": 0, "errors": []}, ago=timedelta(minutes=14))
    assert _get(client)[1]["degraded"] == ["log_shipper"]


def test_a_worker_that_is_not_required_never_degrades(app: Flask, client: FlaskClient, settings: Settings) -> None:
    _use(app, settings)
    _beat("poller")
    _beat("dispatcher")
    _beat("receiver", ago=timedelta(hours=3))  # Zulip was configured once, and no longer is
    status, body = _get(client)
    assert status == 200 and body["components"]["workers"]["receiver"] == {
        "status": "stale", "required": False, "seconds_since_beat": pytest.approx(3 * 3600, abs=5)}


def test_health_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(make_settings(url, tmp_path / "git"))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error" and body["components"]["database"]["status"] == "error"
    assert "postgres@" not in response.get_data(as_text=True)  # no connection details leak


def test_the_world_learns_only_the_status(app: Flask, client: FlaskClient, settings: Settings) -> None:
    _use(app, settings)
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/health", environ_base=outside).get_json() == {"status": "degraded"}
    _beat("poller")
    _beat("dispatcher")
    response = client.get("/health", environ_base=outside)
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    for loopback in ("127.0.0.1", "::1"):
        assert "components" in client.get("/health", environ_base={"REMOTE_ADDR": loopback}).get_json()


def test_the_first_request_after_a_database_restart_succeeds(app: Flask, client: FlaskClient, settings: Settings) -> None:
    """A PostgreSQL restart ends every pooled connection; the next request must not be the one that finds out."""
    _use(app, settings)
    _beat("poller")
    _beat("dispatcher")
    assert client.get("/health").status_code == 200  # leaves its connection in the pool
    assert end_sessions(db.engine) >= 1
    response = client.get("/health")
    assert response.status_code == 200, response.get_json()
