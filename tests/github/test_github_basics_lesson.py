"""A scripted student takes github-basics through githubkit against the GitHub test server; the poller checks."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from githubkit.exception import RequestFailed

from app.db import db, utcnow
from app.runs.models import RunStatus
from app.students.models import Student
from app.workers.poller import Poller
from tests.github_server.server import GitHubTestServer
from tests.helpers import ChatStudent

ORG = "lessonbot-course"


class GitHubStudent(ChatStudent):
    """A chat student with a GitHub account, working on the run's repository through githubkit."""

    def use(self, gh: GitHubTestServer, login: str) -> None:
        self.gh, self.account = gh, gh.add_student(login)
        self.github = gh.client(self.account)  # kept: githubkit's namespaces hold their client weakly

    @property
    def repo(self) -> str:
        run = self.run()
        assert run is not None
        return str(run.context["github_repo"]).split("/")[1]

    def accept_invitation(self) -> None:
        for invitation in self.github.rest.repos.list_invitations_for_authenticated_user().parsed_data:
            self.github.rest.repos.accept_invitation_for_authenticated_user(invitation.id)

    def branch(self, name: str) -> None:
        main = self.github.rest.git.get_ref(ORG, self.repo, "heads/main").parsed_data
        self.github.rest.git.create_ref(ORG, self.repo, ref=f"refs/heads/{name}", sha=main.object_.sha)

    def commit(self, branch: str, path: str, text: str, message: str) -> None:
        """What `git commit` and `git push` do to the repository on GitHub (the test server speaks no git protocol)."""
        try:  # GitHub wants the blob id of the file being replaced
            sha: str | None = self.github.rest.repos.get_content(ORG, self.repo, path, ref=branch).parsed_data.sha  # type: ignore[union-attr]
        except RequestFailed:
            sha = None
        content = base64.b64encode(text.encode()).decode()
        if sha is None:
            self.github.rest.repos.create_or_update_file_contents(ORG, self.repo, path, message=message,
                                                                  content=content, branch=branch)
        else:
            self.github.rest.repos.create_or_update_file_contents(ORG, self.repo, path, message=message,
                                                                  content=content, branch=branch, sha=sha)

    def poll(self, app: Flask) -> str:
        """Make the run's check due and let the poller take it, as it would after the check interval."""
        run = self.run()
        assert run is not None
        run.next_check_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        Poller(app.extensions["lessonbot.settings"], app.extensions["lessonbot.catalog"]).run_once()
        return self.new_replies()


def _student(client: FlaskClient, gh: GitHubTestServer, tmp_path: Path, email: str, login: str) -> GitHubStudent:
    student = GitHubStudent(client, email, tmp_path)
    student.use(gh, login)
    return student


CI = "on: push\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n"


def _template(gh: GitHubTestServer) -> None:
    gh.add_template("github-basics-template", {"README.md": b"# GitHub basics\n",
                                               ".github/workflows/ci.yml": CI.encode()})


def test_student_completes_github_basics_by_polling_alone(github_app: Flask, gh: GitHubTestServer, client: FlaskClient,
                                                          tmp_path: Path) -> None:
    _template(gh)
    student = _student(client, gh, tmp_path, "gwen@example.com", "gwen-codes")
    assert "needs your GitHub login" in student.say("start github-basics")
    assert "Noted your GitHub login: `gwen-codes`" in student.say("link github @Gwen-Codes")
    started = student.say("start github-basics")
    assert "Step 1 of 8" in started and f"{gh.url}/{ORG}/github-basics-gwen-codes-" in started
    assert "the invitation for `gwen-codes` is not accepted yet" in student.say("check")

    student.accept_invitation()
    assert "Step 1 passed (+10)" in student.poll(github_app)
    assert db.session.query(Student).filter_by(email="gwen@example.com").one().github_confirmed_at is not None
    student.branch("add-notes")
    assert "Step 2 passed (+10)" in student.poll(github_app)
    student.commit("add-notes", "NOTES.md", "I learn GitHub\n", "Add notes")
    assert "does not contain “Lessonbot”" in student.say("check")
    student.commit("add-notes", "NOTES.md", "I learn GitHub with Lessonbot\n", "Mention Lessonbot")
    assert "Step 3 passed (+10)" in student.poll(github_app)

    issue = student.github.rest.issues.create(ORG, student.repo, title="Notes are missing").parsed_data
    pull = student.github.rest.pulls.create(ORG, student.repo, title="Add notes", head="add-notes", base="main",
                                            body=f"Fixes #{issue.number}").parsed_data
    assert "Step 4 passed (+10)" in student.poll(github_app)
    student.github.rest.pulls.merge(ORG, student.repo, pull.number, merge_method="merge")
    merged = student.poll(github_app)
    assert "Step 5 passed (+15)" in merged and "Step 6 passed (+15)" in merged  # the merge closed the issue too
    assert "ended `failure`" in student.say("check")  # the merge ran the template's failing workflow
    student.commit("main", ".github/workflows/ci.yml", CI.replace("exit 1", "echo ok"), "Make CI pass")
    assert "Step 7 passed (+15)" in student.poll(github_app)

    assert "Not right" in student.say("git commit")
    assert "Score: 100 of 100" in student.say("Fixes #7")
    run = student.run()
    assert run is not None and run.status == RunStatus.COMPLETED and run.points == 100
    assert {result.source for result in run.results} == {"poller", "chat"}


def test_polling_an_unchanged_repository_costs_only_304s(github_app: Flask, gh: GitHubTestServer,
                                                         client: FlaskClient, tmp_path: Path) -> None:
    _template(gh)
    student = _student(client, gh, tmp_path, "hal@example.com", "hal")
    student.say("link github hal")
    student.say("start github-basics")
    student.accept_invitation()
    student.poll(github_app)  # step 1 passes; step 2 (a branch) is next
    student.branch("elsewhere")
    student.poll(github_app)  # no branch add-notes: an empty list of matching refs, kept with its ETag
    student.branch("add-notes")
    student.commit("add-notes", "OTHER.md", "x", "Other")
    assert "Step 2 passed" in student.poll(github_app)  # step 3 is read once: no NOTES.md at the tip, kept
    student.commit("add-notes", "NOTES.md", "draft\n", "Draft")
    student.poll(github_app)  # the branch moved: NOTES.md without the word, kept for that commit
    used = gh.rate_used()
    before = len(gh.request_log)

    for _ in range(3):
        student.poll(github_app)

    polls = gh.request_log[before:]
    assert [record.status for record in polls] == [304, 304, 304]
    assert all(record.conditional for record in polls)
    assert gh.rate_used() == used  # GitHub does not count a 304


def test_a_login_confirmed_by_one_student_cannot_be_taken_by_another(github_app: Flask, gh: GitHubTestServer,
                                                                     client: FlaskClient, tmp_path: Path) -> None:
    _template(gh)
    owner = _student(client, gh, tmp_path, "ivy@example.com", "ivy")
    owner.say("link github ivy")
    owner.say("start github-basics")
    mallory = GitHubStudent(client, "mallory@example.com", tmp_path)
    mallory.use(gh, "mallory")

    assert "Noted your GitHub login: `ivy`" in mallory.say("link github ivy")  # a claim proves nothing yet…
    mallory.say("start github-basics")
    mallory.accept_invitation()  # …mallory's own account has no invitation to accept
    assert "is not accepted yet" in mallory.say("check")

    owner.accept_invitation()  # ivy accepts both invitations sent to her account
    assert "Step 1 passed" in owner.say("check")
    assert "confirmed by another student" in mallory.say("check")
    assert "already confirmed by another student" in mallory.say("link github ivy")


def test_start_says_what_is_wrong_when_github_cannot_set_up_the_run(github_app: Flask, gh: GitHubTestServer,
                                                                    client: FlaskClient, tmp_path: Path) -> None:
    student = _student(client, gh, tmp_path, "jon@example.com", "jon")
    student.say("link github jon")
    assert "did not find the lesson's template repository `github-basics-template`" in student.say("start github-basics")
    _template(gh)
    student.say("link github nobody-of-that-name")
    repositories = len(gh.hub.repos)
    assert "There is no GitHub user `nobody-of-that-name`" in student.say("start github-basics")
    assert len(gh.hub.repos) == repositories  # nothing made for a mistyped login
    student.say("link github jon")
    gh.faults.script([503], endpoint="POST /repos/*/generate")
    assert "GitHub is not answering right now" in student.say("start github-basics")
    assert student.run() is None
    assert "Step 1 of 8" in student.say("start github-basics")


def test_github_trouble_during_a_check_is_an_error_not_a_failed_step(github_app: Flask, gh: GitHubTestServer,
                                                                     client: FlaskClient, tmp_path: Path) -> None:
    _template(gh)
    student = _student(client, gh, tmp_path, "kim@example.com", "kim")
    student.say("link github kim")
    student.say("start github-basics")
    student.accept_invitation()
    gh.faults.script([500], endpoint="GET /repos/*/collaborators")
    assert "GitHub is not answering right now" in student.say("check")
    assert "Step 1 passed" in student.say("check")


