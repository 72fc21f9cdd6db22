"""The bot's review leaves through the outbox exactly once: a lost answer or a crash before the commit
is followed by a look for the bot's own comment, never by a second review."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import db, utcnow
from app.github.delivery import ReviewPosting
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from tests.github_server.server import GitHubTestServer
from tests.zulip_server.faults import Fault

from .test_github_basics_lesson import ORG, GitHubStudent, _student, _template


def _at_review(github_app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path) -> GitHubStudent:
    """A student whose pull request is open: the review step is current and its review queued."""
    _template(gh)
    student = _student(client, gh, tmp_path, "rae@example.com", "rae")
    student.say("link github rae")
    student.say("start github-basics")
    student.outbox(github_app)
    student.accept_invitation()
    student.branch("add-notes")
    student.commit("add-notes", "NOTES.md", "I learn GitHub with Lessonbot\n", "Add notes")
    student.github.rest.pulls.create(ORG, student.repo, title="Notes", head="add-notes", base="main")
    assert "Step 4 passed" in student.poll(github_app)
    assert "Step 5 passed" not in student.say("check")  # asked again: still one review queued
    return student


def _review_item() -> OutboxItem:
    db.session.expire_all()
    (item,) = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GITHUB_REVIEW))
    return item


def _reviews(gh: GitHubTestServer, student: GitHubStudent) -> int:
    return len(gh.repo(f"{ORG}/{student.repo}").issues[student.pull_number()].reviews)


def _due_now() -> None:
    item = _review_item()
    item.next_attempt_at = utcnow()
    db.session.commit()


def test_a_review_whose_answer_was_lost_is_found_not_posted_again(github_app: Flask, gh: GitHubTestServer,
                                                                  client: FlaskClient, tmp_path: Path) -> None:
    student = _at_review(github_app, gh, client, tmp_path)
    gh.faults.script([Fault("drop", after=True)], endpoint="POST /repos/*/pulls/*/reviews")
    student.outbox(github_app)
    assert _review_item().status == OutboxStatus.PENDING and _reviews(gh, student) == 1
    assert _review_item().next_attempt_at > utcnow()  # in flight: not retried before the request surely ended
    _due_now()
    student.outbox(github_app)
    item = _review_item()
    assert item.status == OutboxStatus.SENT and _reviews(gh, student) == 1
    assert "you have not answered my comment" in student.say("check")


def test_a_crash_between_the_review_and_the_commit_posts_no_second_review(
        github_app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    student = _at_review(github_app, gh, client, tmp_path)
    record = ReviewPosting._record

    def crash(*args: object) -> None:
        raise RuntimeError("the dispatcher died before its commit")

    monkeypatch.setattr(ReviewPosting, "_record", staticmethod(crash))
    student.outbox(github_app)
    assert _reviews(gh, student) == 1 and _review_item().status == OutboxStatus.PENDING
    monkeypatch.setattr(ReviewPosting, "_record", staticmethod(record))
    _due_now()
    student.outbox(github_app)
    assert _review_item().status == OutboxStatus.SENT and _reviews(gh, student) == 1


def test_a_review_github_refuses_for_good_is_parked_and_the_student_told(
        github_app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path) -> None:
    student = _at_review(github_app, gh, client, tmp_path)
    gh.faults.script([422], endpoint="POST /repos/*/pulls/*/reviews")
    assert "I could not post my review of pull request" in student.outbox(github_app)
    assert _review_item().status == OutboxStatus.FAILED
    assert "please tell your teacher" in student.say("check")
