"""A scripted student takes git-basics through real git pushes and real hook calls."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from app.runs.models import RunStatus
from tests.helpers import ChatStudent


def test_student_completes_git_basics_with_full_score(client: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "ada@example.com", tmp_path)
    assert "Step 1 of 7" in student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# My project\n", "Add README")
    push = student.git("push", "-q", "origin", "main")
    assert "Step 1 passed (+20)" in push  # the hook's answer reaches the pusher
    assert "Step 2 of 7" in student.new_replies()

    assert "Not right" in student.say("git blame")
    assert "Step 2 passed (+10)" in student.say("git log")

    student.git("switch", "-qc", "feature")
    student.git("push", "-q", "origin", "feature")
    assert "Step 3 passed (+15)" in student.new_replies()
    student.commit_file("hello.txt", "Hello, Git!\n", "Say hello")
    student.git("push", "-q", "origin", "feature")
    assert "Step 4 passed (+15)" in student.new_replies()

    student.git("switch", "-q", "main")
    student.git("merge", "-q", "--no-ff", "feature", "-m", "Merge feature")
    student.git("push", "-q", "origin", "main")
    assert "Step 5 passed (+20)" in student.new_replies()
    student.git("tag", "-a", "v1.0", "-m", "First version")
    student.git("push", "-q", "origin", "v1.0")
    assert "Step 6 passed (+10)" in student.new_replies()

    final = student.say("git status")
    assert "Score: 100 of 100" in final
    run = student.run()
    assert run is not None and run.status == RunStatus.COMPLETED and run.points == 100
    assert [result.step_id for result in run.results] == [
        "first-commit", "quiz-log", "feature-branch", "feature-file", "merge", "tag", "quiz-status"]
    assert {result.source for result in run.results} == {"hook", "chat"}


def test_push_that_skips_ahead_passes_several_steps_at_once(client: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "bob@example.com", tmp_path)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    student.say("log")
    student.git("switch", "-qc", "feature")
    student.commit_file("hello.txt", "Hello, Git!\n", "Say hello")
    student.git("push", "-q", "origin", "feature")
    replies = student.new_replies()
    assert "Step 3 passed" in replies and "Step 4 passed" in replies and "Step 5 of 7" in replies


def test_check_reports_what_is_missing(client: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "cy@example.com", tmp_path)
    student.say("start git-basics")
    assert "no commits yet" in student.say("check")
    student.clone_repo()
    student.commit_file("notes.txt", "x\n", "Notes")
    student.git("push", "-q", "origin", "main")
    assert "no file `README.md` on branch `main`" in student.new_replies()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    student.say("log")
    assert "there is no branch `feature` yet" in student.say("check")


def test_hint_status_stop_and_restart(client: FlaskClient, live_server: str, tmp_path: Path, app: Flask) -> None:
    student = ChatStudent(client, "dee@example.com", tmp_path)
    student.say("start git-basics")
    assert "git push -u origin main" in student.say("hint")
    assert "step 1 of 7, 0 of 100 points" in student.say("status")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    assert "step 2 of 7, 20 of 100 points" in student.say("status")

    assert "already in lesson `git-basics` (step 2 of 7)" in student.say("start zulip-basics")
    assert "stopped without a grade; your 20 points stay on record" in student.say("stop")
    first = student.run()
    assert first is not None and first.status == RunStatus.STOPPED and first.points == 20
    assert "not in a lesson" in student.say("status")

    reply = student.say("restart")
    assert "again from step 1" in reply and "Step 1 of 7" in reply
    second = student.run()
    assert second is not None and second.id != first.id and second.status == RunStatus.ACTIVE
    assert second.points == 0 and second.context["repo_name"] != first.context["repo_name"]
    assert "again from step 1" in student.say("restart")  # restart while active: a fresh run again
    assert student.run().id not in (first.id, second.id)  # type: ignore[union-attr]


def test_start_of_the_lesson_under_way_resumes_it_with_the_steps_task(
        client: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "eve@example.com", tmp_path)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    student.new_replies()
    first = student.run()

    reply = student.say("start git-basics")
    assert "Welcome back to “Interactive lesson on Git”: you are at step 2 of 7, with 20 of 100 points" in reply
    assert "**Step 2 of 7.** Question: which Git command shows the history of commits?" in reply
    assert first is not None and f"git clone {first.context['clone_url']}\n" in reply  # the clone may be gone
    assert "already" not in reply
    resumed = student.run()
    assert resumed is not None and first is not None and resumed.id == first.id and resumed.points == 20
    assert "Step 2 passed (+10)" in student.say("git log")


def test_fast_forwarded_student_recovers_by_following_the_merge_hint(
        client: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "fay@example.com", tmp_path)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    student.git("push", "-q", "origin", "main")
    student.say("git log")
    student.git("switch", "-qc", "feature")
    student.commit_file("hello.txt", "Hello, Git!\n", "Say hello")
    student.git("push", "-q", "origin", "feature")
    assert "Step 5 of 7" in student.new_replies()

    student.git("switch", "-q", "main")
    student.git("merge", "-q", "feature")  # no --no-ff: main only moves forward
    student.git("push", "-q", "origin", "main")
    assert "no merge commit on branch `main`" in student.new_replies()
    assert "Already up to date" in student.git("merge", "--no-ff", "feature", "-m", "Merge feature")

    hint = student.say("hint")
    assert "Already up to date" in hint
    commands = re.search(r"```\n(.*?)```", hint, re.DOTALL)
    assert commands is not None
    for line in commands[1].strip().splitlines():
        student.git(*shlex.split(line)[1:])
    assert "Step 5 passed (+20)" in student.new_replies()
