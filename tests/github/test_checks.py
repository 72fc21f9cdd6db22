"""The github.* checks one by one: passed, not yet with the reason, or error."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.db import db
from app.lessons.checks import CheckContext, check_types, run_check
from app.outbox.models import OutboxItem, OutboxKind
from tests.github_server.models import Account, Repo
from tests.github_server.server import GitHubTestServer

ORG = "lessonbot-course"
FAILING = b"on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n"


@pytest.fixture
def world(github_app: Flask, gh: GitHubTestServer) -> tuple[Repo, Account, CheckContext]:
    template = gh.add_template("tpl", {"README.md": b"hi\n"})
    repo = gh.hub.generate(template, gh.org, "run", None, True)
    alice = gh.add_student("alice")
    repo.collaborators.add("alice")
    context = CheckContext({"github_repo": f"{ORG}/run", "github_login": "alice", "github_url": f"{gh.url}/{ORG}/run"})
    return repo, alice, context


def check(check_name: str, context: CheckContext, **params: Any) -> tuple[str, str | None]:
    result = run_check(check_name, check_types()[check_name].params(**params), context)
    return result.status, result.reason.key if result.reason else None


def _pull_by(gh: GitHubTestServer, repo: Repo, author: Account) -> int:
    repo.branches["topic"] = repo.branches["main"]
    repo.commit_on("topic", {**repo.commits[repo.branches["main"]].tree, "a.txt": b"a"}, "A", author)
    return gh.hub.open_pull(repo, author, "A", "topic", "main", None).number


def test_a_review_counts_only_in_the_state_asked_for(gh: GitHubTestServer,
                                                     world: tuple[Repo, Account, CheckContext]) -> None:
    repo, alice, context = world
    assert check("github.pull_request_reviewed", context, head="topic") == ("not_yet", "github.no_pull")
    number = _pull_by(gh, repo, alice)
    assert check("github.pull_request_reviewed", context, head="topic") == ("not_yet", "github.no_review")
    teacher = gh.add_student("teacher")
    repo.collaborators.add("teacher")
    reviewer = gh.client(teacher)
    reviewer.rest.pulls.create_review(ORG, "run", number, event="REQUEST_CHANGES", body="Say why")
    assert check("github.pull_request_reviewed", context, head="topic", state="changes_requested") == ("passed", None)
    assert check("github.pull_request_reviewed", context, head="topic") == ("not_yet", "github.no_review")
    reviewer.rest.pulls.create_review(ORG, "run", number, event="APPROVE")
    assert check("github.pull_request_reviewed", context, head="topic") == ("passed", None)


def test_a_pull_request_by_someone_else_does_not_count(gh: GitHubTestServer,
                                                       world: tuple[Repo, Account, CheckContext]) -> None:
    repo, _, context = world
    _pull_by(gh, repo, gh.add_student("bob"))
    assert check("github.pull_request_opened", context, head="topic") == ("not_yet", "github.pull_by_other")


def test_a_label_on_any_issue(gh: GitHubTestServer, world: tuple[Repo, Account, CheckContext]) -> None:
    repo, alice, context = world
    issue = gh.hub.open_issue(repo, alice, "Bug", None, [])
    assert check("github.label_added", context, label="bug") == ("not_yet", "github.no_label")
    issue.labels.append("Bug")
    assert check("github.label_added", context, label="bug") == ("passed", None)


def test_the_newest_workflow_run_decides(gh: GitHubTestServer, world: tuple[Repo, Account, CheckContext]) -> None:
    repo, alice, context = world
    assert check("github.workflow_succeeded", context) == ("not_yet", "github.no_workflow_run")
    tree = repo.commits[repo.branches["main"]].tree
    repo.commit_on("main", {**tree, ".github/workflows/ci.yml": FAILING}, "CI", alice)
    assert check("github.workflow_succeeded", context) == ("not_yet", "github.workflow_failed")
    repo.commit_on("main", {**tree, ".github/workflows/ci.yml": FAILING.replace(b"exit 1", b"true")}, "Fix", alice)
    assert check("github.workflow_succeeded", context) == ("passed", None)
    assert check("github.workflow_succeeded", context, workflow=".github/workflows/other.yml") == (
        "not_yet", "github.no_workflow_run")


def test_github_trouble_is_an_error_and_a_run_without_repository_too(gh: GitHubTestServer,
                                                                     world: tuple[Repo, Account, CheckContext]) -> None:
    _, _, context = world
    gh.faults.script([502], endpoint="GET /repos/*/git/matching-refs/*")
    assert check("github.branch_exists", context, name="main") == ("error", "github.unavailable")
    assert check("github.branch_exists", context, name="main") == ("passed", None)
    assert check("github.branch_exists", CheckContext({}), name="main") == ("error", "github.no_repo")


def test_file_on_a_branch_says_whether_the_branch_or_the_file_is_missing(
        gh: GitHubTestServer, world: tuple[Repo, Account, CheckContext]) -> None:
    _, _, context = world
    assert check("github.file_on_branch", context, path="README.md", branch="nope") == ("not_yet", "github.no_branch")
    assert check("github.file_on_branch", context, path="NOTES.md") == ("not_yet", "github.no_file")
    assert check("github.file_on_branch", context, path="README.md", matches=r"^hi$") == ("passed", None)


REVIEW = {"head": "topic", "path": "a.txt", "line": 1, "comment": {"ru": "Добавьте строку", "en": "Add a line"},
          "contains": "fixed"}


def test_a_review_comment_counts_once_the_student_answered_it_and_pushed_the_fix(
        gh: GitHubTestServer, world: tuple[Repo, Account, CheckContext]) -> None:
    repo, alice, context = world
    assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.no_pull")
    number = _pull_by(gh, repo, alice)
    assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.review_coming")
    pull = repo.issues[number]
    comment = gh.hub.comment_on_line(repo, pull, gh.app.bot, "a.txt", 1, "Add a line", None)
    posted = {"github_reviews": {"topic/a.txt:1": {"comment_id": comment.id, "number": number, "url": "u"}}}
    context = CheckContext({**context.run_context, **posted})
    assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.review_unanswered")
    gh.hub.reply_to_comment(pull, gh.add_student("bob"), comment.id, "Not mine to answer")
    assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.review_unanswered")
    gh.hub.reply_to_comment(pull, alice, comment.id, "On it")
    assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.review_not_fixed")
    repo.commit_on("topic", {**repo.commits[repo.branches["topic"]].tree, "a.txt": b"a\nfixed\n"}, "Fix", alice)
    assert check("github.review_comment_answered", context, **REVIEW) == ("passed", None)


def test_the_review_is_queued_once_however_often_the_step_is_checked(
        gh: GitHubTestServer, world: tuple[Repo, Account, CheckContext]) -> None:
    repo, alice, context = world
    _pull_by(gh, repo, alice)
    for _ in range(3):
        assert check("github.review_comment_answered", context, **REVIEW) == ("not_yet", "github.review_coming")
    (item,) = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.GITHUB_REVIEW))
    assert item.payload["comment"].startswith("Add a line") and "<!-- lessonbot:review:topic/a.txt:1 -->" in (
        item.payload["comment"])


def test_a_run_whose_repository_is_being_prepared_is_not_yet_checked(world: tuple[Repo, Account, CheckContext]) -> None:
    _, _, context = world
    preparing = CheckContext({key: value for key, value in context.run_context.items() if key != "github_url"})
    assert check("github.branch_exists", preparing, name="main") == ("not_yet", "github.repo_not_ready")
