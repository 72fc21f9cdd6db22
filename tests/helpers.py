"""Test helpers: a student who chats through /internal/messages and works in a real git clone."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from flask.testing import FlaskClient

from app.alerts.delivery import AlertSender
from app.db import db
from app.outbox.dispatcher import Dispatcher
from app.outbox.models import OutboxItem, OutboxKind
from app.runs.models import LessonRun
from app.settings import Settings
from app.students.models import Student
from app.zulip.connect import connect
from app.zulip.delivery import ZulipSender
from tests.conftest import SECRETS

_ids = itertools.count(1)
INTERNAL_HEADERS = {"Authorization": f"Bearer {SECRETS['internal_token']}"}


def post_message(client: FlaskClient, email: str, content: str, message_id: str | None = None,
                 headers: dict[str, str] | None = None, remote: str = "127.0.0.1") -> tuple[int, dict]:
    body = {"message_id": message_id or f"test:{next(_ids)}", "sender_email": email,
            "sender_full_name": email.split("@")[0].title(), "content": content}
    response = client.post("/internal/messages", json=body, headers=INTERNAL_HEADERS if headers is None else headers,
                           environ_base={"REMOTE_ADDR": remote})
    return response.status_code, response.get_json()


def replies_to(email: str) -> list[str]:
    """Every chat reply queued for the student, oldest first."""
    query = (sa.select(OutboxItem).join(Student, Student.id == OutboxItem.student_id)
             .where(Student.email == email, OutboxItem.kind == OutboxKind.CHAT_REPLY).order_by(OutboxItem.id))
    db.session.expire_all()
    return [str(item.payload["content"]) for item in db.session.scalars(query)]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Student", "GIT_AUTHOR_EMAIL": "s@example.com",
           "GIT_COMMITTER_NAME": "Student", "GIT_COMMITTER_EMAIL": "s@example.com", "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(cwd)}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout + result.stderr


@dataclass
class ChatStudent:
    """A student talking to the core through the internal endpoint, as the receiver would."""

    client: FlaskClient
    email: str
    workdir: Path
    seen: int = 0
    clone: Path | None = field(default=None)

    def say(self, text: str) -> str:
        status, body = post_message(self.client, self.email, text)
        assert status == 200, body
        return self.new_replies()

    def new_replies(self) -> str:
        replies = replies_to(self.email)
        fresh = replies[self.seen :]
        self.seen = len(replies)
        return "\n".join(fresh)

    def run(self) -> LessonRun | None:
        db.session.expire_all()
        query = sa.select(LessonRun).join(Student).where(Student.email == self.email).order_by(LessonRun.id.desc())
        return db.session.scalars(query.limit(1)).first()

    def clone_repo(self) -> Path:
        run = self.run()
        assert run is not None
        target = self.workdir / f"clone-{run.id}"
        git(self.workdir, "clone", "-q", run.context["clone_url"], target.name)
        self.clone = target
        return target

    def git(self, *args: str) -> str:
        assert self.clone is not None
        return git(self.clone, *args)

    def commit_file(self, path: str, content: str, message: str) -> None:
        assert self.clone is not None
        (self.clone / path).write_text(content)
        self.git("add", path)
        self.git("commit", "-qm", message)


@contextlib.contextmanager
def poisoned_inbound() -> Iterator[None]:
    """PostgreSQL itself refuses to store any inbound message containing ☠ (a trigger), as a real fault would."""
    db.session.execute(sa.text("""
        CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger AS $$
        BEGIN
            IF NEW.content LIKE '%☠%' THEN RAISE EXCEPTION 'poisoned message'; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER test_poison BEFORE INSERT ON inbound_messages FOR EACH ROW EXECUTE FUNCTION test_poison();
    """))
    db.session.commit()
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(sa.text("DROP TRIGGER IF EXISTS test_poison ON inbound_messages; "
                                   "DROP FUNCTION IF EXISTS test_poison()"))
        db.session.commit()


def zulip_dispatcher(settings: Settings) -> Dispatcher:
    """A dispatcher with the Zulip handlers only (chat replies, ops alerts), on a client of its own."""
    api = connect(settings)
    return Dispatcher([ZulipSender(api, settings), AlertSender(api, settings)])
