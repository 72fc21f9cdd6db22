"""/health follows the real workers: each one stopped in turn makes it degraded, started again makes it ok."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from tests.zulip.conftest import Workers, wait_until
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer

STALE_SECONDS = 8  # the receiver beats every 5 s; the poller every pass (0.5 s here)


def _health(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    db.session.rollback()
    response = client.get("/health")
    return response.status_code, response.get_json()


def _becomes(client: FlaskClient, status: int, degraded: list[str], what: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def matches() -> bool:
        code, body = _health(client)
        seen.update(body)
        return code == status and body.get("degraded", []) == degraded

    wait_until(matches, 60, f"/health: {what} (last seen: {seen.get('status')}, {seen.get('degraded')})")
    return seen


def test_health_is_degraded_while_a_worker_is_stopped_and_ok_again_once_it_runs(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers, client: FlaskClient) -> None:
    zulip_app.extensions["lessonbot.settings"] = zulip_app.extensions["lessonbot.settings"].model_copy(
        update={"worker_stale_seconds": STALE_SECONDS})
    workers.start("receiver", "app.workers.receiver")
    workers.start("poller", "app.workers.poller")
    workers.start("dispatcher", "app.workers.dispatcher")
    body = _becomes(client, 200, [], "every worker beating")
    assert {name: worker["status"] for name, worker in body["components"]["workers"].items()} == {
        "dispatcher": "ok", "poller": "ok", "receiver": "ok"}

    workers.kill("receiver")
    body = _becomes(client, 503, ["receiver"], "the killed receiver stale")
    assert body["status"] == "degraded" and body["components"]["workers"]["receiver"]["status"] == "stale"
    workers.start("receiver", "app.workers.receiver")
    _becomes(client, 200, [], "the restarted receiver beating")

    workers.stop("dispatcher")
    body = _becomes(client, 503, ["dispatcher"], "the stopped dispatcher stale")
    workers.start("dispatcher", "app.workers.dispatcher")
    _becomes(client, 200, [], "the restarted dispatcher beating")
