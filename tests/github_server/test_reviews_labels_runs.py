"""Reviews, labels and workflow runs, as GitHub answers them."""

from __future__ import annotations

import base64

import pytest
from githubkit.exception import RequestFailed

from .server import GitHubTestServer
from .test_flow import app_client

ORG = "lessonbot-course"


def _pull(gh: GitHubTestServer) -> tuple[object, int]:
    gh.add_template("tpl", {"README.md": b"hi\n"})
    repo = gh.hub.generate(gh.repo(f"{ORG}/tpl"), gh.org, "run", None, True)
    alice = gh.add_student("alice")
    repo.collaborators.add("alice")
    main = repo.branches["main"]
    repo.branches["topic"] = main
    repo.commit_on("topic", {"README.md": b"changed\n"}, "Change", alice)
    pull = gh.hub.open_pull(repo, alice, "Change", "topic", "main", None)
    return alice, pull.number


def test_the_author_cannot_approve_their_own_pull_request_but_a_reviewer_can(gh: GitHubTestServer) -> None:
    alice, number = _pull(gh)
    student = gh.client(alice)  # type: ignore[arg-type]
    with pytest.raises(RequestFailed) as own:
        student.rest.pulls.create_review(ORG, "run", number, event="APPROVE")
    assert own.value.response.status_code == 422
    bot = app_client(gh)
    bot.rest.pulls.create_review(ORG, "run", number, event="REQUEST_CHANGES", body="Please say why")
    student.rest.pulls.create_review(ORG, "run", number, event="COMMENT", body="Done, see the new commit")
    reviews = bot.rest.pulls.list_reviews(ORG, "run", number).parsed_data
    assert [(r.user.login if r.user else None, r.state) for r in reviews] == [
        ("lessonbot[bot]", "CHANGES_REQUESTED"), ("alice", "COMMENTED")]


def test_labels_are_added_to_an_issue(gh: GitHubTestServer) -> None:
    alice, number = _pull(gh)
    student = gh.client(alice)  # type: ignore[arg-type]
    labels = student.rest.issues.add_labels(ORG, "run", number, labels=["documentation"]).parsed_data
    assert [label.name for label in labels] == ["documentation"]
    assert [label.name for label in student.rest.issues.get(ORG, "run", number).parsed_data.labels] == [  # type: ignore[union-attr]
        "documentation"]


def test_a_push_runs_the_workflows_and_exit_1_fails(gh: GitHubTestServer) -> None:
    alice, _ = _pull(gh)
    student = gh.client(alice)  # type: ignore[arg-type]
    workflow = b"on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n"
    student.rest.repos.create_or_update_file_contents(ORG, "run", ".github/workflows/ci.yml", message="CI",
                                                      content=base64.b64encode(workflow).decode(), branch="topic")
    runs = student.rest.actions.list_workflow_runs_for_repo(ORG, "run", branch="topic").parsed_data
    assert [(run.path, run.conclusion) for run in runs.workflow_runs] == [(".github/workflows/ci.yml", "failure")]
    sha = student.rest.repos.get_content(ORG, "run", ".github/workflows/ci.yml", ref="topic").parsed_data.sha  # type: ignore[union-attr]
    fixed = workflow.replace(b"exit 1", b"echo ok")
    student.rest.repos.create_or_update_file_contents(ORG, "run", ".github/workflows/ci.yml", message="Fix CI",
                                                      content=base64.b64encode(fixed).decode(), branch="topic", sha=sha)
    latest = student.rest.actions.list_workflow_runs_for_repo(ORG, "run", branch="topic").parsed_data.workflow_runs[0]
    assert latest.conclusion == "success" and latest.run_number == 2


def test_a_review_comments_on_a_changed_line_and_the_author_replies_in_its_thread(gh: GitHubTestServer) -> None:
    alice, number = _pull(gh)
    student = gh.client(alice)  # type: ignore[arg-type]
    bot = app_client(gh)
    with pytest.raises(RequestFailed) as unchanged:  # GitHub comments only on what the pull request changes
        bot.rest.pulls.create_review(ORG, "run", number, event="REQUEST_CHANGES", body="See",
                                     comments=[{"path": "OTHER.md", "line": 1, "body": "?"}])
    assert unchanged.value.response.status_code == 422
    review = bot.rest.pulls.create_review(ORG, "run", number, event="REQUEST_CHANGES", body="See my comment",
                                          comments=[{"path": "README.md", "line": 1, "body": "Add a line"}]).parsed_data
    (comment,) = bot.rest.pulls.list_review_comments(ORG, "run", number).parsed_data
    assert (comment.pull_request_review_id, comment.path, comment.line, comment.body) == (
        review.id, "README.md", 1, "Add a line")
    student.rest.pulls.create_reply_for_review_comment(ORG, "run", number, comment.id, body="Done")
    student.rest.pulls.create_review_comment(ORG, "run", number, body="And again", in_reply_to=comment.id,
                                             commit_id=comment.commit_id, path=comment.path)
    thread = bot.rest.pulls.list_review_comments(ORG, "run", number).parsed_data
    assert [(c.user.login if c.user else None, c.in_reply_to_id or None) for c in thread] == [
        ("lessonbot[bot]", None), ("alice", comment.id), ("alice", comment.id)]


def test_the_repository_lists_its_pending_invitations(gh: GitHubTestServer) -> None:
    alice, _ = _pull(gh)
    bob = gh.add_student("bob")
    bot = app_client(gh)
    bot.rest.repos.add_collaborator(ORG, "run", "bob", permission="push")
    bot.rest.repos.add_collaborator(ORG, "run", "bob", permission="push")  # the pending one, not a second
    invitations = bot.rest.repos.list_invitations(ORG, "run").parsed_data
    assert [(i.invitee.login if i.invitee else None) for i in invitations] == [bob.login]
    assert alice.login not in [i.invitee.login for i in invitations if i.invitee]  # a collaborator is not invited
