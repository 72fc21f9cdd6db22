"""What the funnel shows comes from real chat: hints, "not yet"s and wrong answers are recorded per step,
and the student's page shows the messages they wrote."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from tests.admin.conftest import cell
from tests.helpers import ChatStudent


def test_hints_not_yets_and_wrong_answers_reach_the_funnel_and_the_conversation(
        client: FlaskClient, admin: FlaskClient, live_server: str, tmp_path: Path) -> None:
    student = ChatStudent(client, "ada@example.com", tmp_path)
    student.say("lang en")
    student.say("start git-basics")
    assert "Not yet: the repository has no commits yet" in student.say("check")
    student.say("hint")
    student.say("hint")
    student.clone_repo()
    student.commit_file("README.md", "hello\n", "First commit")
    student.git("push", "-q", "origin", "main")
    student.say("git commit")
    student.say("  GIT   Commit ")

    page = admin.get("/admin/lessons/git-basics").text
    first, quiz = 'data-step="first-commit"', 'data-step="quiz-log"'
    assert cell(page, first, "hints") == "1"  # one run asked, twice
    assert (cell(page, first, "reached"), cell(page, first, "passed")) == ("1", "1")
    assert (cell(page, quiz, "reached"), cell(page, quiz, "passed")) == ("1", "0")
    assert "2 × «git commit»" in page  # answers are grouped as the check compares them
    assert "1 × the repository has no commits yet — commit and push" in page  # the reason, in English

    run = student.run()
    assert run is not None
    conversation = admin.get(f"/admin/students/{run.student_id}").text
    assert "start git-basics" in conversation and "  GIT   Commit " in conversation
