"""POST /internal/alerts: Alertmanager's webhook becomes one outbox item, posted to the ops stream and topic."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.alerts.service import DEDUPE_WINDOW_SECONDS, Notification, queue_alert
from app.db import db
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from tests.conftest import SECRETS
from tests.helpers import zulip_dispatcher
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer

TOKEN = {"Authorization": f"Bearer {SECRETS['internal_token']}"}
STARTED = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()


def alert(name: str, status: str, **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager writes it in a webhook body."""
    return {"status": status, "labels": {"alertname": name, "severity": "critical", **labels},
            "annotations": {"summary": f"{labels.get('job', 'lessonbot')} does not answer", "runbook": "README#monitoring"},
            "startsAt": STARTED, "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else datetime.now(UTC).isoformat(),
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": f"{name}-{labels.get('job', '')}"}


def notification(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for one group."""
    return {"version": "4", "groupKey": '{}:{alertname="LessonbotTargetDown"}', "truncatedAlerts": 0, "status": status,
            "receiver": "lessonbot", "groupLabels": {"alertname": "LessonbotTargetDown"},
            "commonLabels": {"alertname": "LessonbotTargetDown"}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": list(alerts)}


FIRING = notification("firing", alert("LessonbotTargetDown", "firing", job="lessonbot_receiver"),
                      alert("LessonbotTargetDown", "firing", job="lessonbot_poller"))
RESOLVED = notification("resolved", alert("LessonbotTargetDown", "resolved", job="lessonbot_receiver"),
                        alert("LessonbotTargetDown", "resolved", job="lessonbot_poller"))


def _alert_items() -> list[OutboxItem]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.OPS_ALERT)
                                   .order_by(OutboxItem.id)))


def _settings(app: Flask) -> Settings:
    return app.extensions["lessonbot.settings"]


@pytest.fixture
def ops(zs: ZulipTestServer, bot: User) -> User:
    """An operator subscribed to the ops stream."""
    operator = zs.add_user("ops@example.com", "Ops")
    zs.add_stream("lessonbot-ops", subscribers=[bot, operator])
    return operator


def test_a_firing_group_and_its_resolution_arrive_in_the_ops_stream_and_topic(
        zulip_app: Flask, client: FlaskClient, zs: ZulipTestServer, bot: User, ops: User) -> None:
    answer = client.post("/internal/alerts", json=FIRING, headers=TOKEN)
    assert answer.status_code == 202, answer.get_json()
    [item] = _alert_items()
    assert answer.get_json() == {"status": "queued", "outbox_id": item.id}
    assert item.payload["stream"] == "lessonbot-ops" and item.payload["topic"] == "alerts"

    delivery = zulip_dispatcher(_settings(zulip_app))
    assert delivery.deliver_due() == 1
    [firing] = [message for message in zs.messages if message.type == "stream"]
    assert firing.sender.email == bot.email and firing.stream is not None
    assert (firing.stream.name, firing.topic) == ("lessonbot-ops", "alerts")
    assert "**FIRING** 2 of 2" in firing.content and "alertname=LessonbotTargetDown" in firing.content
    assert "job=lessonbot_receiver" in firing.content and "job=lessonbot_poller" in firing.content
    assert "runbook: README#monitoring" in firing.content

    assert client.post("/internal/alerts", json=RESOLVED, headers=TOKEN).status_code == 202
    assert delivery.deliver_due() == 1
    stream_messages = [message for message in zs.messages if message.type == "stream"]
    assert len(stream_messages) == 2
    resolved = stream_messages[1]
    assert resolved.topic == "alerts" and "**RESOLVED** 2" in resolved.content and "job=lessonbot_receiver" in resolved.content
    assert [item.status for item in _alert_items()] == [OutboxStatus.SENT, OutboxStatus.SENT]


def test_an_alert_whose_send_was_uncertain_is_found_in_the_topic_not_sent_twice(
        zulip_app: Flask, client: FlaskClient, zs: ZulipTestServer, bot: User, ops: User) -> None:
    assert client.post("/internal/alerts", json=FIRING, headers=TOKEN).status_code == 202
    delivery = zulip_dispatcher(_settings(zulip_app))
    zs.faults.drop_next(1, endpoint="POST /messages", after=True)  # Zulip stores it, the answer is lost
    delivery.deliver_due()
    [item] = _alert_items()
    assert item.ambiguous and item.status == OutboxStatus.PENDING
    item.next_attempt_at = item.created_at  # as if the back-off had passed
    db.session.commit()
    delivery.deliver_due()
    assert len([message for message in zs.messages if message.type == "stream"]) == 1
    [item] = _alert_items()
    assert item.status == OutboxStatus.SENT and item.external_id is not None


def test_an_alert_that_cannot_go_yet_holds_back_no_students_reply(
        zulip_app: Flask, client: FlaskClient, zs: ZulipTestServer, bot: User, ops: User) -> None:
    student = zs.add_user("ann@example.com", "Ann")
    assert client.post("/internal/alerts", json=FIRING, headers=TOKEN).status_code == 202
    [item] = _alert_items()
    item.next_attempt_at = datetime.now(UTC) + timedelta(hours=1)  # backing off after a failure
    item.student_id = None
    db.session.add(OutboxItem(kind=OutboxKind.CHAT_REPLY, student_id=None, status=OutboxStatus.PENDING,
                              payload={"to": student.email, "to_user_id": student.id, "content": "sorry"}))
    db.session.commit()
    assert zulip_dispatcher(_settings(zulip_app)).deliver_due() == 1
    assert [message.content for message in zs.messages_to(student)] == ["sorry"]


@pytest.mark.parametrize(("headers", "remote", "status"), [
    ({}, "127.0.0.1", 401),
    ({"Authorization": "Bearer not-the-internal-token"}, "127.0.0.1", 401),
    (TOKEN, "10.20.30.40", 403),
])
def test_only_loopback_callers_with_the_internal_token_may_post(
        client: FlaskClient, headers: dict[str, str], remote: str, status: int) -> None:
    answer = client.post("/internal/alerts", json=FIRING, headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert answer.status_code == status
    assert answer.get_json()["message"].endswith(".")
    assert _alert_items() == []


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    del changed[key]
    return changed


def _with(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(body), **changes}


@pytest.mark.parametrize(("body", "detail"), [
    (_without(FIRING, "alerts"), "alerts: Field required"),
    (_with(FIRING, alerts=[]), "alerts: List should have at least 1 item"),
    (_with(FIRING, version="3"), "version: Input should be '4'"),
    (_with(FIRING, status="exploded"), "status: Input should be 'firing' or 'resolved'"),
    (_with(FIRING, alerts=[{**FIRING["alerts"][0], "startsAt": "2026-12-06T10:00:00"}]), "alerts.0.startsAt"),
    (_with(FIRING, alerts=[_without(FIRING["alerts"][0], "labels")]), "alerts.0.labels: Field required"),
    ([FIRING], "body"),
])
def test_a_body_that_is_not_an_alertmanager_notification_is_400_with_a_sentence(
        client: FlaskClient, body: Any, detail: str) -> None:
    answer = client.post("/internal/alerts", json=body, headers=TOKEN)
    assert answer.status_code == 400
    error = answer.get_json()
    assert error["message"] == "The body is missing fields or has wrong values."
    assert any(line.startswith(detail) for line in error["details"]), error["details"]
    assert _alert_items() == []


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    answer = client.post("/internal/alerts", data="{not json", headers={**TOKEN, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.get_json()["message"] == "The body is not valid JSON."


def test_a_huge_group_is_one_message_within_zulips_limit(client: FlaskClient) -> None:
    many = notification("firing", *(alert("LessonbotTargetDown", "firing", job=f"job{n}", instance="x" * 300)
                                    for n in range(150)))
    assert client.post("/internal/alerts", json=many, headers=TOKEN).status_code == 202
    [item] = _alert_items()
    content = item.payload["content"]
    assert len(content) <= 9000 and "… and 130 more" in content


def test_a_notification_sent_again_after_a_timeout_is_queued_once(client: FlaskClient) -> None:
    """Alertmanager retries a webhook call that timed out, though we had committed it: one message, not two."""
    first = client.post("/internal/alerts", json=FIRING, headers=TOKEN)
    again = client.post("/internal/alerts", json=FIRING, headers=TOKEN)
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json() == {"status": "duplicate"}
    assert len(_alert_items()) == 1
    assert client.post("/internal/alerts", json=RESOLVED, headers=TOKEN).status_code == 202  # a new state is news
    another_alert = notification("firing", alert("LessonbotTargetDown", "firing", job="lessonbot_dispatcher"))
    assert client.post("/internal/alerts", json=another_alert, headers=TOKEN).status_code == 202
    assert len(_alert_items()) == 3


def test_alertmanagers_deliberate_repeat_hours_later_is_posted_again(app: Flask) -> None:
    settings = _settings(app)
    now = datetime.now(UTC)
    body = Notification.model_validate(FIRING)
    assert queue_alert(body, settings, now) is not None
    assert queue_alert(body, settings, now + timedelta(seconds=DEDUPE_WINDOW_SECONDS)) is None  # a late resend
    assert queue_alert(body, settings, now + timedelta(hours=4)) is not None  # repeat_interval
    db.session.commit()
    assert len(_alert_items()) == 2


def test_concurrent_resends_queue_one_item(app: Flask, client: FlaskClient) -> None:
    answers: list[int] = []

    def post() -> None:
        with app.test_client() as own:
            answers.append(own.post("/internal/alerts", json=FIRING, headers=TOKEN).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers).count(202) == 1 and len(answers) == 6, answers
    assert len(_alert_items()) == 1
