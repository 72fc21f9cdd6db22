"""Admin commands in chat: only an allowlisted admin's Zulip account is answered; long work runs in the outbox dispatcher."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.admin import chat
from app.admin.chat import AdminJobs
from app.admin.models import AdminAction
from app.db import db, utcnow
from app.google.signin import add_admin
from app.i18n import Text
from app.outbox.dispatcher import Dispatcher
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from tests.helpers import INTERNAL_HEADERS, replies_to

ADMIN, ADMIN_ZULIP_ID = "ops@school.example", 4242
_ids = itertools.count(1)


def _say(client: FlaskClient, email: str, zulip_id: int | None, content: str) -> str:
    """One Zulip message through the internal endpoint; the reply it got."""
    before = len(replies_to(email))
    body: dict[str, Any] = {"message_id": f"zulip:{next(_ids)}", "sender_email": email, "sender_full_name": "Someone",
                            "content": content}
    if zulip_id is not None:
        body["sender_id"] = zulip_id
    response = client.post("/internal/messages", json=body, headers=INTERNAL_HEADERS)
    assert response.status_code == 200, response.get_json()
    replies = replies_to(email)[before:]
    assert len(replies) == 1, replies
    return replies[0]


def _actions() -> list[tuple[str, str, str]]:
    db.session.expire_all()
    return [(a.admin_email, a.action, a.detail) for a in db.session.scalars(sa.select(AdminAction).order_by(AdminAction.id))]


def _jobs() -> list[OutboxItem]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.ADMIN_JOB)))


@pytest.fixture
def admin(app: Flask) -> str:
    add_admin(ADMIN, ADMIN_ZULIP_ID)
    db.session.commit()
    return ADMIN


def _poll(app: Flask, settings: Settings) -> None:
    Dispatcher([AdminJobs(settings, app.extensions["lessonbot.catalog"])]).run_once()


@pytest.mark.parametrize(("email", "zulip_id"), [
    ("student@school.example", 77),   # a student
    (ADMIN, None),                     # the admin's email from the console (no Zulip account)
    (ADMIN, 78),                       # someone whose Zulip email is the admin's, but another account
])
def test_anyone_but_the_admins_zulip_account_gets_the_ordinary_reply(client: FlaskClient, admin: str, email: str,
                                                                      zulip_id: int | None) -> None:
    unknown = _say(client, email, zulip_id, "please admin status")  # what any unknown text gets
    reply = _say(client, email, zulip_id, "admin status")
    assert reply.replace("admin status", "please admin status") == unknown
    assert "admin" not in reply.lower().replace("admin status", "")
    assert _actions() == [] and _jobs() == []


def test_help_and_an_unknown_admin_command_answer_at_once_and_are_recorded(client: FlaskClient, admin: str) -> None:
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "admin help") == Text("admin.help").render("en")
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "@**Lessonbot** Admin") == Text("admin.help").render("en")
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "admin reboot") == Text("admin.unknown").render("en")
    _say(client, ADMIN, ADMIN_ZULIP_ID, "язык ru")
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "админ справка") == Text("admin.unknown").render("ru")
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "админ help") == Text("admin.help").render("ru")
    assert [what for _, what, _ in _actions()] == ["chat: help", "chat: help", "chat: unknown", "chat: unknown",
                                                   "chat: help"]


def test_admin_student_shows_their_runs_and_grades(client: FlaskClient, admin: str) -> None:
    _say(client, "kim@school.example", 501, "start git-basics")
    _say(client, ADMIN, ADMIN_ZULIP_ID, "lang en")
    reply = _say(client, ADMIN, ADMIN_ZULIP_ID, "admin student KIM@school.example")
    assert reply.startswith("`admin student KIM@school.example`:\n```text\n")
    assert "<kim@school.example>" in reply and "git-basics 1/7 first-commit, active, 0 points" in reply
    assert "no student 'nobody@x.example'" in _say(client, ADMIN, ADMIN_ZULIP_ID, "admin student nobody@x.example")
    assert "which student?" in _say(client, ADMIN, ADMIN_ZULIP_ID, "admin student")


def test_a_name_cannot_break_out_of_the_code_block(client: FlaskClient, admin: str) -> None:
    body = {"message_id": "zulip:evil", "sender_email": "evil@school.example", "sender_id": 502, "content": "help",
            "sender_full_name": "```\n@**all** look"}
    assert client.post("/internal/messages", json=body, headers=INTERNAL_HEADERS).status_code == 200
    reply = _say(client, ADMIN, ADMIN_ZULIP_ID, "admin student evil@school.example")
    assert reply.count("```") == 2


def test_status_starts_a_job_that_the_dispatcher_runs_and_reports(app: Flask, client: FlaskClient, settings: Settings,
                                                                admin: str) -> None:
    _say(client, ADMIN, ADMIN_ZULIP_ID, "lang en")
    assert _say(client, ADMIN, ADMIN_ZULIP_ID, "admin status") == "`admin status`: started; I will write when it is done."
    [job] = _jobs()
    assert job.status == OutboxStatus.PENDING and _actions()[-1] == (ADMIN, "chat: status", "started")
    _poll(app, settings)
    [report] = replies_to(ADMIN)[-1:]
    assert report.startswith("`admin status`:\n```text\n") and "database" in report and "worker poller" in report
    assert _jobs()[0].status == OutboxStatus.SENT
    assert _actions()[-1][2].startswith("done: ")


def test_grades_sync_with_nothing_waiting_says_so(app: Flask, client: FlaskClient, settings: Settings, admin: str) -> None:
    _say(client, ADMIN, ADMIN_ZULIP_ID, "lang en")
    _say(client, ADMIN, ADMIN_ZULIP_ID, "admin grades sync")
    _poll(app, settings)
    assert "sent 0, failed 0, still waiting 0 (0 failed ones tried again)" in replies_to(ADMIN)[-1]


@pytest.mark.parametrize(("command", "reason"), [
    ("backup", "LESSONBOT_BACKUP_AGE_RECIPIENTS"),
    ("logs ship", "LESSONBOT_LOG_DIR"),
])
def test_a_job_that_cannot_run_fails_with_one_line_and_is_not_retried(app: Flask, client: FlaskClient, settings: Settings,
                                                                      admin: str, command: str, reason: str) -> None:
    _say(client, ADMIN, ADMIN_ZULIP_ID, "lang en")
    _say(client, ADMIN, ADMIN_ZULIP_ID, f"admin {command}")
    _poll(app, settings.model_copy(update={"log_dir": None, "backup_age_recipients": ()}))
    failed = replies_to(ADMIN)[-1]
    assert failed.startswith(f"`admin {command}` failed: ") and reason in failed and "Traceback" not in failed
    assert _jobs()[0].status == OutboxStatus.FAILED and _actions()[-1][2].startswith("failed: ")


def test_a_job_that_crashes_is_tried_again_then_reported(app: Flask, client: FlaskClient, settings: Settings, admin: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(settings: Settings, catalog: object) -> str:
        raise RuntimeError("the disk is full")

    monkeypatch.setitem(chat._JOBS, "status", broken)
    _say(client, ADMIN, ADMIN_ZULIP_ID, "lang en")
    _say(client, ADMIN, ADMIN_ZULIP_ID, "admin status")
    for attempt in range(1, chat.JOB_ATTEMPTS + 1):
        _poll(app, settings)
        [job] = _jobs()
        assert job.attempts == attempt
        if attempt < chat.JOB_ATTEMPTS:
            assert job.status == OutboxStatus.PENDING and job.next_attempt_at > utcnow()  # a minute later, not at once
            job.next_attempt_at = utcnow()
            db.session.commit()
    assert job.status == OutboxStatus.FAILED
    assert replies_to(ADMIN)[-1] == "`admin status` failed: RuntimeError: the disk is full"


def test_admins_add_with_a_zulip_account(runner: Any, app: Flask) -> None:
    result = runner.invoke(args=["admins", "add", "Ops@School.example", "--zulip-user-id", "4242"])
    assert result.exit_code == 0 and "Zulip user 4242 may use admin commands" in result.output
    assert "ops@school.example  (Zulip user 4242)" in runner.invoke(args=["admins", "list"]).output
    taken = runner.invoke(args=["admins", "add", "other@school.example", "--zulip-user-id", "4242"])
    assert taken.exit_code == 1 and "already the chat account of admin ops@school.example" in taken.output
    assert "Traceback" not in taken.output
