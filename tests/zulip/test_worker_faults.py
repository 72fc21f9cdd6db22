"""The Zulip workers as supervisor runs them, under faults that used to double, stall or silently stop replies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.chat.models import InboundMessage
from app.db import db
from app.outbox.models import OutboxItem, OutboxStatus
from app.settings import Settings
from tests.zulip.conftest import Workers, wait_until
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer

BAD_KEY = "refused the bot's email or API key"


def _dm(zs: ZulipTestServer, student: User, bot: User, content: str) -> None:
    result = zs.client(student).send_message({"type": "private", "to": [bot.email], "content": content})
    assert result["result"] == "success", result


def _replies(zs: ZulipTestServer, student: User, bot: User) -> list[str]:
    return [message.content for message in zs.messages_to(student) if message.sender.id == bot.id]


def _inbound(content: str) -> bool:
    db.session.rollback()
    return db.session.scalar(sa.select(InboundMessage.id).where(InboundMessage.content == content)) is not None


def _items() -> list[OutboxItem]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(OutboxItem).order_by(OutboxItem.id)))


def test_sigkill_while_zulip_holds_the_send_never_doubles_the_reply(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                    workers: Workers) -> None:
    student = zs.add_user("kim@example.com", "Kim Student")
    workers.start("receiver", "app.workers.receiver")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    _dm(zs, student, bot, "help")
    wait_until(lambda: _inbound("help"), 30, "the message to reach the core")
    zs.faults.set_delay(4.0, endpoint="POST /messages")  # Zulip holds the reply's send for 4 s
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: zs.faults.count("delay") >= 1, 60, "the dispatcher to start sending")
    workers.kill("dispatcher")  # SIGKILL mid-send: the request still lands
    zs.faults.clear()
    wait_until(lambda: len(_replies(zs, student, bot)) == 1, 10, "the held send to land")
    item = _items()[0]
    assert item.status == OutboxStatus.PENDING and item.ambiguous and item.attempts == 1  # committed before sending
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: _items()[0].status == OutboxStatus.SENT, 60, "the restarted dispatcher to settle the reply")
    time.sleep(1.0)
    assert len(_replies(zs, student, bot)) == 1
    assert "found after an uncertain attempt" in workers.log("dispatcher")


def test_a_second_dispatcher_takes_over_a_killed_ones_reply_without_doubling_it(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers) -> None:
    student = zs.add_user("noa@example.com", "Noa Student")
    workers.start("receiver", "app.workers.receiver")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    zs.faults.set_delay(4.0, endpoint="POST /messages")  # Zulip holds each send for 4 s
    workers.start("first", "app.workers.dispatcher")
    _dm(zs, student, bot, "help")
    _dm(zs, student, bot, "lessons")
    wait_until(lambda: zs.faults.count("delay") >= 1, 60, "the first dispatcher to start sending")
    workers.start("second", "app.workers.dispatcher")  # the student's queue is the first one's: it stands by
    time.sleep(1.0)
    workers.kill("first")  # SIGKILL mid-send: the request still lands, and the queue's lock goes with the process
    zs.faults.clear()
    wait_until(lambda: len(_items()) == 2 and all(item.status == OutboxStatus.SENT for item in _items()), 90,
               "the second dispatcher to settle both replies")
    time.sleep(1.0)
    replies = _replies(zs, student, bot)
    assert len(replies) == 2 and replies[1].startswith("Lessons:")  # each once, in order
    assert "found after an uncertain attempt" in workers.log("second")


def _key_in_env_file(workers: Workers, tmp_path: Path, key: str) -> Path:
    """Keep the API key in the env file only (as production does), so that fixing the file fixes the key."""
    env_file = tmp_path / "lessonbot.env"
    env_file.write_text(f"LESSONBOT_ZULIP_API_KEY={key}\n")
    env_file.chmod(0o600)
    workers.env.pop("LESSONBOT_ZULIP_API_KEY", None)
    workers.env["LESSONBOT_ENV_FILE"] = str(env_file)
    return env_file


def _health_worker(client: FlaskClient, name: str) -> dict[str, object]:
    db.session.rollback()
    body = client.get("/health").get_json()
    return dict(body["components"]["workers"].get(name, {}))


def test_a_rotated_key_is_one_line_and_visible_and_delivery_resumes_once_the_key_is_fixed(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers, tmp_path: Path, client: FlaskClient) -> None:
    settings: Settings = zulip_app.extensions["lessonbot.settings"]
    student = zs.add_user("lee@example.com", "Lee Student")
    env_file = _key_in_env_file(workers, tmp_path, bot.api_key)
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    _dm(zs, student, bot, "help")
    wait_until(lambda: len(_replies(zs, student, bot)) == 1, 30, "the first reply")

    rotated = zs.rotate_api_key(bot)  # the old key is refused from now on (401)
    _dm(zs, student, bot, "lessons")  # the receiver cannot fetch this one until the key is fixed
    # A reply queued meanwhile (the core answering a message) cannot leave either.
    response = client.post("/internal/messages", data=json.dumps({
        "message_id": "zulip:900001", "sender_email": student.email, "sender_id": student.id, "content": "status"}),
        content_type="application/json", headers={"Authorization": f"Bearer {settings.internal_token.get_secret_value()}"})
    assert response.status_code == 200
    wait_until(lambda: _health_worker(client, "receiver").get("status") == "error", 60, "/health to show the receiver's error")
    wait_until(lambda: _health_worker(client, "dispatcher").get("status") == "error", 60,
               "/health to show the senders' error")
    senders = _health_worker(client, "dispatcher")
    assert BAD_KEY in json.dumps(senders) and senders["alive"] == senders["threads"]
    assert BAD_KEY in str(_health_worker(client, "receiver").get("error"))
    assert workers.processes["receiver"].poll() is None and workers.processes["dispatcher"].poll() is None
    assert len(_replies(zs, student, bot)) == 1

    env_file.write_text(f"LESSONBOT_ZULIP_API_KEY={rotated.api_key}\n")  # the admin fixes the key; nobody restarts anything
    wait_until(lambda: len(_replies(zs, student, bot)) == 3, 90, "delivery to resume by itself")
    time.sleep(1.0)
    replies = _replies(zs, student, bot)
    assert len(replies) == 3 and sum(reply.startswith("Lessons:") for reply in replies) == 1
    wait_until(lambda: _health_worker(client, "dispatcher").get("status") == "ok", 30, "the senders to report ok")
    wait_until(lambda: _health_worker(client, "receiver").get("status") == "ok", 30, "the receiver to report ok")
    for name in ("receiver", "dispatcher"):
        log = workers.log(name)
        assert "Traceback" not in log and "AssertionError" not in log, f"{name}:\n{log[-3000:]}"
        assert BAD_KEY in log


def test_a_wrong_key_at_start_is_one_line_not_a_traceback(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                         workers: Workers, tmp_path: Path, client: FlaskClient) -> None:
    _key_in_env_file(workers, tmp_path, "not-the-key")
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: _health_worker(client, "receiver").get("status") == "error", 60, "the receiver's error in /health")
    time.sleep(2.0)
    assert workers.processes["receiver"].poll() is None and workers.processes["dispatcher"].poll() is None
    for name in ("receiver", "dispatcher"):
        log = workers.log(name)
        assert "Traceback" not in log and "AssertionError" not in log, f"{name}:\n{log[-3000:]}"
    assert BAD_KEY in workers.log("receiver")


def test_five_students_cost_one_server_settings_call_per_process(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                 workers: Workers) -> None:
    zs.add_stream("sandbox", subscribers=[bot])
    students = [zs.add_user(f"s{n}@example.com", f"Student {n}") for n in range(5)]
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    for student in students:
        _dm(zs, student, bot, "start zulip-basics")
    wait_until(lambda: all(len(_replies(zs, s, bot)) >= 1 for s in students), 60, "every student's first step")
    for student in students:
        zs.client(student).add_subscriptions([{"name": "sandbox"}])
        _dm(zs, student, bot, "check")  # the core runs zulip.subscribed through the bot's API
        _dm(zs, student, bot, "check")
    wait_until(lambda: all(len(_replies(zs, s, bot)) >= 3 for s in students), 60, "every check's answer")
    calls = [r for r in zs.request_log if r.path == "/api/v1/server_settings" and r.user_id == bot.id]
    checks = [r for r in zs.request_log if r.user_id == bot.id and "subscriptions" in r.path]
    print(f"\nGET /server_settings by the bot: {len(calls)} (receiver, dispatcher and core processes); "
          f"subscription checks: {len(checks)}")
    assert len(checks) >= 5
    assert len(calls) <= 3  # one client per process: receiver, dispatcher and the core


def _listening() -> list[int]:
    """The reply senders' LISTEN connections. A fresh transaction each time: PostgreSQL keeps one
    snapshot of pg_stat_activity for a whole transaction, so asking again inside it sees nothing new."""
    db.session.rollback()
    pids = db.session.scalars(sa.text("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN lessonbot_outbox%' "
                                      "AND pid <> pg_backend_pid()")).all()
    db.session.rollback()
    return list(pids)


def test_a_dispatcher_thread_that_dies_is_started_again_and_replies_keep_leaving(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers, client: FlaskClient) -> None:
    student = zs.add_user("max@example.com", "Max Student")
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    wait_until(lambda: len(_listening()) >= 1, 60, "the reply senders to listen")
    # The database drops the senders' LISTEN connections (as a PostgreSQL restart would): the threads end.
    for pid in _listening():
        db.session.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()
    wait_until(lambda: int(str(_health_worker(client, "dispatcher").get("restarts", 0))) >= 1, 60,
               "the dispatcher to start its thread again")
    _dm(zs, student, bot, "help")
    wait_until(lambda: len(_replies(zs, student, bot)) == 1, 30, "the reply, through a restarted sender")
    senders = _health_worker(client, "dispatcher")
    assert senders["alive"] == senders["threads"]
    log = workers.log("dispatcher")
    assert "stopped unexpectedly" in log and "starting it again" in log
    assert workers.processes["dispatcher"].poll() is None
