"""A student's work on GitHub through githubkit, as the App sees it."""

from __future__ import annotations

import base64

import pytest
from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from .server import GitHubTestServer


def app_client(gh: GitHubTestServer) -> GitHub[AppInstallationAuthStrategy]:
    auth = AppInstallationAuthStrategy(gh.app.id, gh.private_key_pem.decode(), gh.installation.id)
    return GitHub(auth, base_url=gh.url, http_cache=False, auto_retry=False, cache_strategy=MemCacheStrategy())


def test_the_app_generates_a_repository_and_the_invited_student_opens_and_merges_a_pull_request(
        gh: GitHubTestServer) -> None:
    gh.add_template("hello-template", {"README.md": b"# Hello\n"})
    alice = gh.add_student("alice")
    bot = app_client(gh)
    repo = bot.rest.repos.create_using_template("lessonbot-course", "hello-template", owner="lessonbot-course",
                                                name="hello-alice", private=True).parsed_data
    assert repo.full_name == "lessonbot-course/hello-alice" and repo.default_branch == "main"
    invited = bot.rest.repos.add_collaborator("lessonbot-course", "hello-alice", "alice", permission="push")
    assert invited.status_code == 201
    student = gh.client(alice)
    with pytest.raises(RequestFailed) as hidden:
        student.rest.repos.get("lessonbot-course", "hello-alice")
    assert hidden.value.response.status_code == 404
    invitation = student.rest.repos.list_invitations_for_authenticated_user().parsed_data[0]
    student.rest.repos.accept_invitation_for_authenticated_user(invitation.id)
    assert bot.rest.repos.check_collaborator("lessonbot-course", "hello-alice", "alice").status_code == 204

    main = student.rest.git.get_ref("lessonbot-course", "hello-alice", "heads/main").parsed_data
    student.rest.git.create_ref("lessonbot-course", "hello-alice", ref="refs/heads/feature", sha=main.object_.sha)
    student.rest.repos.create_or_update_file_contents(
        "lessonbot-course", "hello-alice", "docs/notes.md", message="Add notes",
        content=base64.b64encode(b"notes\n").decode(), branch="feature")
    issue = student.rest.issues.create("lessonbot-course", "hello-alice", title="Notes are missing").parsed_data
    pull = student.rest.pulls.create("lessonbot-course", "hello-alice", title="Notes", head="feature", base="main",
                                     body=f"Fixes #{issue.number}").parsed_data
    assert pull.user is not None and pull.user.login == "alice"
    student.rest.pulls.merge("lessonbot-course", "hello-alice", pull.number, merge_method="merge")

    merged = bot.rest.pulls.get("lessonbot-course", "hello-alice", pull.number).parsed_data
    assert merged.merged and merged.merged_by is not None and merged.merged_by.login == "alice"
    closed = bot.rest.issues.get("lessonbot-course", "hello-alice", issue.number).parsed_data
    assert closed.state == "closed" and closed.state_reason == "completed"
    content = bot.rest.repos.get_content("lessonbot-course", "hello-alice", "docs/notes.md", ref="main").parsed_data
    assert base64.b64decode(content.content) == b"notes\n"  # type: ignore[union-attr]
