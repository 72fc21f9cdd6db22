"""Webhook deliveries against `@octokit/openapi-webhooks`: every event the server sends conforms, and the checker
catches a payload or a delivery that does not."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

from .contract import WEBHOOKS_PATH, WebhookContract
from .reference.vendor import WEBHOOKS, WEBHOOKS_VERSION
from .server import GitHubTestServer
from .test_flow import app_client

ORG = "lessonbot-course"
Seen = list[tuple[str, dict[str, str], dict[str, Any]]]


def _record(gh: GitHubTestServer) -> Seen:
    seen: Seen = []
    gh.webhooks.observers.append(lambda event, headers, payload: seen.append((event, headers, payload)))
    return seen


def _every_event(gh: GitHubTestServer) -> None:
    """A student's work that makes each webhook the server sends at least once."""
    gh.add_template("tpl", {"README.md": b"hi\n"})
    alice = gh.add_student("alice")
    bot, student = app_client(gh), gh.client(alice)
    bot.rest.repos.create_using_template(ORG, "tpl", owner=ORG, name="run", private=True)
    bot.rest.repos.add_collaborator(ORG, "run", "alice", permission="push")
    (invitation,) = student.rest.repos.list_invitations_for_authenticated_user().parsed_data
    student.rest.repos.accept_invitation_for_authenticated_user(invitation.id)
    main = student.rest.git.get_ref(ORG, "run", "heads/main").parsed_data
    student.rest.git.create_ref(ORG, "run", ref="refs/heads/topic", sha=main.object_.sha)
    student.rest.repos.create_or_update_file_contents(ORG, "run", "NOTES.md", message="Notes", branch="topic",
                                                      content=base64.b64encode(b"notes\n").decode())
    issue = student.rest.issues.create(ORG, "run", title="Notes are missing").parsed_data
    student.rest.issues.add_labels(ORG, "run", issue.number, labels=["docs"])
    student.rest.issues.update(ORG, "run", issue.number, title="Notes are still missing")
    student.rest.issues.update(ORG, "run", issue.number, state="closed")
    student.rest.issues.update(ORG, "run", issue.number, state="open")
    pull = student.rest.pulls.create(ORG, "run", title="Notes", head="topic", base="main",
                                     body=f"Fixes #{issue.number}").parsed_data
    bot.rest.pulls.create_review(ORG, "run", pull.number, event="REQUEST_CHANGES", body="One thing",
                                 comments=[{"path": "NOTES.md", "line": 1, "body": "Say more"}])
    (comment,) = bot.rest.pulls.list_review_comments(ORG, "run", pull.number).parsed_data
    student.rest.pulls.create_reply_for_review_comment(ORG, "run", pull.number, comment.id, body="Done")
    student.rest.pulls.merge(ORG, "run", pull.number)


def test_every_delivery_the_server_makes_conforms_to_githubs_webhooks_description(
        gh: GitHubTestServer, webhook_contract: WebhookContract) -> None:
    seen = _record(gh)
    _every_event(gh)
    names = {webhook_contract.webhook_name(event, payload) for event, _, payload in seen}
    assert names == set(WEBHOOKS)  # the vendored subset is what the server sends, no more
    for event, headers, payload in seen:
        assert webhook_contract.check(event, headers, payload) == []


def test_a_payload_or_delivery_that_breaks_the_description_is_caught(gh: GitHubTestServer,
                                                                     webhook_contract: WebhookContract) -> None:
    seen = _record(gh)
    _every_event(gh)
    event, headers, opened = next(item for item in seen if item[0] == "pull_request" and item[2]["action"] == "opened")

    without_pull = {key: value for key, value in opened.items() if key != "pull_request"}
    assert webhook_contract.check(event, headers, without_pull) == [
        "pull_request.opened: payload: 'pull_request' is a required property"]
    wrong_state = copy.deepcopy(opened)
    wrong_state["pull_request"]["state"] = 42
    assert any("pull_request/state" in problem for problem in webhook_contract.check(event, headers, wrong_state))
    wrong_action = {**opened, "action": "exploded"}
    assert webhook_contract.check(event, headers, wrong_action)
    unsigned = {key: value for key, value in headers.items() if key != "X-Hub-Signature-256"}
    assert webhook_contract.check(event, unsigned, opened) == [
        "pull_request.opened: header X-Hub-Signature-256 missing"]
    assert webhook_contract.check("star", headers, {"action": "created"}) == [
        "star.created: no such webhook in the vendored description"]


def test_the_vendored_webhooks_hold_every_webhook_listed() -> None:
    spec = json.loads(WEBHOOKS_PATH.read_text())
    assert WEBHOOKS_VERSION in spec["info"]["x-lessonbot-subset"]
    assert set(spec["webhooks"]) == set(WEBHOOKS)
    readme = (WEBHOOKS_PATH.parent / "README.md").read_text()
    assert hashlib.sha256(WEBHOOKS_PATH.read_bytes()).hexdigest() in readme
