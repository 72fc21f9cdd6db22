"""A scripted student takes github-basics through githubkit against the GitHub test server; the poller checks,
the outbox dispatcher sets up the repository and posts the bot's review."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from githubkit.exception import RequestFailed

from app.db import db, utcnow
from app.github.delivery import MAX_ATTEMPTS, github_handlers
from app.outbox.dispatcher import Dispatcher
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import RunStatus
from app.students.models import Student
from app.workers.poller import Poller
from tests.github_server.api import secondary_limit
from tests.github_server.server import GitHubTestServer
from tests.helpers import ChatStudent
from tests.zulip_server.faults import Fault

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

    def pull_number(self) -> int:
        (pull,) = self.github.rest.pulls.list(ORG, self.repo, state="all", head=f"{ORG}:add-notes").parsed_data
        return pull.number

    def answer_review(self, text: str) -> None:
        """Reply in the thread of the bot's comment, as GitHub's "Reply…" under it does."""
        number = self.pull_number()
        comments = self.github.rest.pulls.list_review_comments(ORG, self.repo, number).parsed_data
        (bots,) = [comment for comment in comments if comment.user is not None and comment.user.type == "Bot"]
        self.github.rest.pulls.create_reply_for_review_comment(ORG, self.repo, number, bots.id, body=text)

    def outbox(self, app: Flask) -> str:
        """Let the outbox dispatcher deliver the GitHub effects that are due (the repository, the review)."""
        deliver_github(app)
        return self.new_replies()

    def poll(self, app: Flask) -> str:
        """Make the run's check due and let the poller take it, as it would after the check interval."""
        run = self.run()
        assert run is not None
        run.next_check_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        Poller(app.extensions["lessonbot.settings"], app.extensions["lessonbot.catalog"]).run_once()
        return self.new_replies()


def deliver_github(app: Flask) -> int:
    with Dispatcher(github_handlers(app.extensions["lessonbot.settings"])) as dispatcher:
        return dispatcher.deliver_due()


def _student(client: FlaskClient, gh: GitHubTestServer, tmp_path: Path, email: str, login: str) -> GitHubStudent:
    student = GitHubStudent(client, email, tmp_path)
    student.use(gh, login)
    return student


CI = "on: push\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n"


def _template(gh: GitHubTestServer) -> None:
    gh.add_template("github-basics-template", {"README.md": b"# GitHub basics\n",
                                               ".github/workflows/ci.yml": CI.encode()})


def _linked(client: FlaskClient, gh: GitHubTestServer, tmp_path: Path, login: str) -> GitHubStudent:
    """A student who said `link github LOGIN` (their own account), the lesson's template in the organization."""
    _template(gh)
    student = _student(client, gh, tmp_path, f"{login}@example.com", login)
    student.say(f"link github {login}")
    return student


def test_student_completes_github_basics_by_polling_alone(github_app: Flask, gh: GitHubTestServer, client: FlaskClient,
                                                          tmp_path: Path) -> None:
    _template(gh)
    student = _student(client, gh, tmp_path, "gwen@example.com", "gwen-codes")
    assert "needs your GitHub login" in student.say("start github-basics")
    assert "Noted your GitHub login: `gwen-codes`" in student.say("link github @Gwen-Codes")
    started = student.say("start github-basics")
    assert "Step 1 of 9" in started and "I am preparing your GitHub repository" in started
    assert "still being prepared" in student.say("check")
    assert f"{gh.url}/{ORG}/github-basics-gwen-codes-" in student.outbox(github_app)
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
    assert "I am sending my review of pull request" in student.say("check")
    student.outbox(github_app)
    (review,) = student.github.rest.pulls.list_reviews(ORG, student.repo, pull.number).parsed_data
    assert review.state == "CHANGES_REQUESTED" and review.user is not None and review.user.type == "Bot"
    assert "you have not answered my comment on `NOTES.md`" in student.say("check")
    student.answer_review("Will do")
    assert "does not contain “Reviewed by Lessonbot” yet" in student.say("check")
    student.commit("add-notes", "NOTES.md", "I learn GitHub with Lessonbot\nReviewed by Lessonbot\n", "Review")
    assert "Step 5 passed (+15)" in student.poll(github_app)
    student.github.rest.pulls.merge(ORG, student.repo, pull.number, merge_method="merge")
    merged = student.poll(github_app)
    assert "Step 6 passed (+10)" in merged and "Step 7 passed (+10)" in merged  # the merge closed the issue too
    assert "ended `failure`" in student.say("check")  # the merge ran the template's failing workflow
    student.commit("main", ".github/workflows/ci.yml", CI.replace("exit 1", "echo ok"), "Make CI pass")
    assert "Step 8 passed (+15)" in student.poll(github_app)

    assert "Not right" in student.say("git commit")
    assert "Score: 100 of 100" in student.say("Fixes #7")
    run = student.run()
    assert run is not None and run.status == RunStatus.COMPLETED and run.points == 100
    assert {result.source for result in run.results} == {"poller", "chat"}
    assert len(gh.repo(f"{ORG}/{student.repo}").issues[pull.number].reviews) == 1  # reviewed once


def test_polling_an_unchanged_repository_costs_only_304s(github_app: Flask, gh: GitHubTestServer,
                                                         client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "hal")
    student.say("start github-basics")
    student.outbox(github_app)
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
    deliver_github(github_app)
    mallory.accept_invitation()  # …mallory's own account has no invitation to accept
    assert "is not accepted yet" in mallory.say("check")

    owner.accept_invitation()  # ivy accepts both invitations sent to her account
    assert "Step 1 passed" in owner.say("check")
    assert "confirmed by another student" in mallory.say("check")
    assert "already confirmed by another student" in mallory.say("link github ivy")


def test_a_wrong_login_or_a_missing_template_ends_the_run_with_the_reason(github_app: Flask, gh: GitHubTestServer,
                                                                           client: FlaskClient, tmp_path: Path) -> None:
    student = _student(client, gh, tmp_path, "jon@example.com", "jon")
    student.say("link github jon")
    student.say("start github-basics")
    assert "did not find the lesson's template repository `github-basics-template`" in student.outbox(github_app)
    run = student.run()
    assert run is not None and run.status == RunStatus.STOPPED
    _template(gh)
    student.say("link github nobody-of-that-name")
    repositories = len(gh.hub.repos)
    student.say("start github-basics")
    assert "There is no GitHub user `nobody-of-that-name`" in student.outbox(github_app)
    assert len(gh.hub.repos) == repositories  # nothing made for a mistyped login
    student.say("link github jon")
    assert "Step 1 of 9" in student.say("start github-basics")
    assert f"{ORG}/github-basics-jon-" in student.outbox(github_app)


def test_github_trouble_at_start_delays_the_repository_but_loses_nothing(github_app: Flask, gh: GitHubTestServer,
                                                                         client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "lea")
    gh.faults.script([503, secondary_limit(2, status=429)], endpoint="POST /repos/*/generate")
    assert "I am preparing your GitHub repository" in student.say("start github-basics")
    assert student.outbox(github_app) == ""  # GitHub answered 503: tried again later
    (item,) = _github_items()
    assert item.status == OutboxStatus.PENDING and "503" in (item.last_error or "")
    _due_now(item)
    assert student.outbox(github_app) == ""  # then a secondary rate limit, with Retry-After
    (item,) = _github_items()
    assert (item.next_attempt_at - utcnow()).total_seconds() >= 1.0  # not before GitHub's Retry-After
    assert item.attempts == 1  # a rate limit is no attempt's fault
    _due_now(item)  # too early: every GitHub request waits for the Retry-After, and the item is not charged
    assert student.outbox(github_app) == ""
    (item,) = _github_items()
    assert item.attempts == 1 and item.next_attempt_at > utcnow()
    time.sleep((item.next_attempt_at - utcnow()).total_seconds())
    assert f"{ORG}/github-basics-lea-" in student.outbox(github_app)
    (item,) = _github_items()
    assert item.status == OutboxStatus.SENT and item.attempts == 2
    assert len([repo for repo in gh.hub.repos if "github-basics-lea-" in repo]) == 1
    assert len(gh.hub.invitations) == 1


def test_a_repository_made_by_an_attempt_whose_answer_was_lost_is_recognised(
        github_app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "max")
    student.say("start github-basics")
    # GitHub makes the repository and invites, but the answers never arrive (the connection drops after).
    gh.faults.script([Fault("drop", after=True)], endpoint="POST /repos/*/generate")
    gh.faults.script([Fault("drop", after=True)], endpoint="PUT /repos/*/collaborators/*")
    assert student.outbox(github_app) == ""
    (item,) = _github_items()
    _due_now(item)
    assert student.outbox(github_app) == ""  # the repository is recognised; the invitation's answer is lost too
    _due_now(item)
    assert f"{ORG}/github-basics-max-" in student.outbox(github_app)
    assert len([repo for repo in gh.hub.repos if "github-basics-max-" in repo]) == 1
    assert len(gh.hub.invitations) == 1
    generates = [r for r in gh.request_log if r.method == "POST" and r.path.endswith("/generate")]
    invites = [r for r in gh.request_log if r.method == "PUT" and "/collaborators/" in r.path]
    assert (len(generates), len(invites)) == (3, 1)  # the pending invitation was found, not sent again


def _github_items() -> list[OutboxItem]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GITHUB_REPO)))


def _due_now(item: OutboxItem) -> None:
    item.next_attempt_at = utcnow()
    db.session.commit()


def test_github_trouble_during_a_check_is_an_error_not_a_failed_step(github_app: Flask, gh: GitHubTestServer,
                                                                     client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "kim")
    student.say("start github-basics")
    student.outbox(github_app)
    student.accept_invitation()
    gh.faults.script([500], endpoint="GET /repos/*/collaborators")
    assert "GitHub is not answering right now" in student.say("check")
    assert "Step 1 passed" in student.say("check")




def test_a_run_stopped_before_its_repository_was_made_gets_none(github_app: Flask, gh: GitHubTestServer,
                                                                client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "ola")
    student.say("start github-basics")
    student.say("stop")
    repositories = len(gh.hub.repos)
    assert student.outbox(github_app) == ""
    assert len(gh.hub.repos) == repositories
    (item,) = _github_items()
    assert item.status == OutboxStatus.SENT and "the run ended" in (item.last_error or "")


def test_a_refused_app_key_pauses_the_setup_without_charging_it(github_app: Flask, gh: GitHubTestServer,
                                                                client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "pia")
    student.say("start github-basics")
    gh.faults.script([401, 401], endpoint="GET /users/*")  # refused, and refused again with fresh tokens
    with Dispatcher(github_handlers(github_app.extensions["lessonbot.settings"])) as dispatcher:
        assert dispatcher.deliver_due() == 1
        assert "refused the App's credentials" in dispatcher.errors()["GitHub repositories"]
    (item,) = _github_items()
    assert item.status == OutboxStatus.PENDING and item.attempts == 0
    assert f"{ORG}/github-basics-pia-" in student.outbox(github_app)


def test_after_long_github_trouble_the_student_is_told_to_start_again(github_app: Flask, gh: GitHubTestServer,
                                                                      client: FlaskClient, tmp_path: Path) -> None:
    student = _linked(client, gh, tmp_path, "quin")
    student.say("start github-basics")
    (item,) = _github_items()
    item.attempts = MAX_ATTEMPTS - 1  # an hour of 5xx already behind it
    db.session.commit()
    gh.faults.script([502], endpoint="POST /repos/*/generate")
    assert "Try `start` again in a few minutes" in student.outbox(github_app)
    (item,) = _github_items()
    assert item.status == OutboxStatus.FAILED and "502" in (item.last_error or "")
    run = student.run()
    assert run is not None and run.status == RunStatus.STOPPED and "github" in run.context["ended_by"]
    assert "Step 1 of 9" in student.say("start github-basics")
