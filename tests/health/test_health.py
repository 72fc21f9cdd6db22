"""GET /health: JSON status of the database and components; 503 when the database is down."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from app import create_app
from tests.conftest import make_settings
from tests.pg import free_port


def test_health_reports_components(client: FlaskClient) -> None:
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["components"]["database"] == {"status": "ok", "dialect": "postgresql"}
    assert body["components"]["lessons"]["count"] >= 1
    assert body["components"]["outbox"]["pending"] == 0
    assert body["components"]["workers"]["poller"]["status"] == "never_seen"


def test_health_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(make_settings(url, tmp_path / "git"))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error" and body["components"]["database"]["status"] == "error"
    assert "postgres@" not in response.get_data(as_text=True)  # no connection details leak
