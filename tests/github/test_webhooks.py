"""/github/hook: deliveries signed as GitHub signs them check the step at once; forged or replayed ones change nothing."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from app.runs.models import RunStatus
from app.settings import Settings
from tests.github_server.server import GitHubTestServer
from tests.github_server.webhooks import Delivery
from tests.helpers import ChatStudent

from .test_github_basics_lesson import CI, ORG, GitHubStudent, _template

SECRET = "webhook-secret-0123456789"


def _hooked(github_app: Flask, gh: GitHubTestServer, live_server: str) -> None:
    settings: Settings = github_app.extensions["lessonbot.settings"]
    github_app.extensions["lessonbot.settings"] = settings.model_copy(
        update={"github_webhook_secret": SecretStr(SECRET)})
    gh.set_webhook(f"{live_server}/github/hook", SECRET)


def _after(gh: GitHubTestServer, student: ChatStudent) -> str:
    gh.webhooks.wait_idle()
    return student.new_replies()


def test_student_completes_github_basics_through_webhooks_alone(github_app: Flask, gh: GitHubTestServer,
                                                                client: FlaskClient, live_server: str,
                                                                tmp_path: Path) -> None:
    _hooked(github_app, gh, live_server)
    _template(gh)
    student = GitHubStudent(client, "mia@example.com", tmp_path)
    student.use(gh, "mia")
    student.say("link github mia")
    assert "Step 1 of 9" in student.say("start github-basics")
    assert f"{ORG}/github-basics-mia-" in student.outbox(github_app)  # the dispatcher made the repository

    student.accept_invitation()
    assert "Step 1 passed" in _after(gh, student)
    student.branch("add-notes")
    assert "Step 2 passed" in _after(gh, student)
    student.commit("add-notes", "NOTES.md", "I learn GitHub with Lessonbot\n", "Add notes")
    assert "Step 3 passed" in _after(gh, student)
    issue = student.github.rest.issues.create(ORG, student.repo, title="Notes are missing").parsed_data
    pull = student.github.rest.pulls.create(ORG, student.repo, title="Notes", head="add-notes", base="main",
                                            body=f"Fixes #{issue.number}").parsed_data
    assert "Step 4 passed" in _after(gh, student)
    student.outbox(github_app)  # the bot's review, asked for by the webhook's check of step 5
    gh.webhooks.wait_idle()
    student.commit("add-notes", "NOTES.md", "I learn GitHub with Lessonbot\nReviewed by Lessonbot\n", "Review")
    assert "Step 5 passed" not in _after(gh, student)  # the fix alone does not answer the comment
    student.answer_review("Added the line")
    assert "Step 5 passed" in _after(gh, student)
    student.github.rest.pulls.merge(ORG, student.repo, pull.number)
    merged = _after(gh, student)
    assert "Step 6 passed" in merged and "Step 7 passed" in merged
    student.commit("main", ".github/workflows/ci.yml", CI.replace("exit 1", "echo ok"), "Make CI pass")
    assert "Step 8 passed" in _after(gh, student)
    assert "Score: 100 of 100" in student.say("fixes #7")
    run = student.run()
    assert run is not None and run.status == RunStatus.COMPLETED
    assert "webhook" in {result.source for result in run.results}
    assert all(delivery.status == 200 for delivery in gh.webhooks.deliveries)


def test_forged_unsigned_and_replayed_deliveries_are_refused(github_app: Flask, gh: GitHubTestServer,
                                                             client: FlaskClient, live_server: str,
                                                             tmp_path: Path) -> None:
    _hooked(github_app, gh, live_server)
    _template(gh)
    student = GitHubStudent(client, "ned@example.com", tmp_path)
    student.use(gh, "ned")
    student.say("link github ned")
    student.say("start github-basics")
    student.outbox(github_app)
    gh.set_webhook(None)  # the student's acceptance is delivered by hand below
    student.accept_invitation()
    gh.set_webhook(f"{live_server}/github/hook", SECRET)
    delivery = Delivery("11111111-2222-3333-4444-555555555555", "member",
                        {"action": "added", "repository": {"full_name": f"{ORG}/{student.repo}"}})

    assert gh.webhooks.send(delivery, signature="sha256=" + "0" * 64) == 401
    assert gh.webhooks.send(delivery, signature="") == 401
    assert student.new_replies() == ""  # nothing was checked
    assert gh.webhooks.send(delivery) == 200
    assert "Step 1 passed" in student.new_replies()
    assert gh.webhooks.send(delivery) == 401  # the same delivery id again
    assert gh.webhooks.send(Delivery("ping-1", "ping", {"zen": "Keep it logically awesome."})) == 200


def test_without_a_secret_the_hook_is_off(github_app: Flask, client: FlaskClient) -> None:
    response = client.post("/github/hook", data=b"{}", headers={"X-GitHub-Event": "ping",
                                                                 "X-Hub-Signature-256": "sha256=x"})
    assert response.status_code == 404


def test_an_unrelated_repository_is_ignored(github_app: Flask, gh: GitHubTestServer, live_server: str) -> None:
    _hooked(github_app, gh, live_server)
    status = gh.webhooks.send(Delivery("d-1", "push", {"repository": {"full_name": f"{ORG}/template"}}))
    assert status == 200


