"""Ended runs' repositories are archived on GitHub after LESSONBOT_GITHUB_ARCHIVE_AFTER_DAYS."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from githubkit.exception import RequestFailed

from app.db import db, utcnow
from app.github.archive import archive_ended_repositories
from app.settings import Settings
from app.workers.poller import Poller
from tests.github_server.server import GitHubTestServer
from tests.helpers import ChatStudent

from .test_github_basics_lesson import deliver_github


def _stopped_run(github_app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path) -> tuple[ChatStudent, str]:
    gh.add_template("github-basics-template", {"README.md": b"# hi\n"})
    gh.add_student("lea")
    student = ChatStudent(client, "lea@example.com", tmp_path)
    student.say("link github lea")
    student.say("start github-basics")
    deliver_github(github_app)  # the repository is set up from the outbox
    run = student.run()
    assert run is not None
    full_name = str(run.context["github_repo"])
    student.say("stop")
    return student, full_name


def test_an_ended_runs_repository_is_archived_once_its_time_is_up(github_app: Flask, gh: GitHubTestServer,
                                                                  client: FlaskClient, tmp_path: Path) -> None:
    student, full_name = _stopped_run(github_app, gh, client, tmp_path)
    settings: Settings = github_app.extensions["lessonbot.settings"]
    assert archive_ended_repositories(settings, utcnow() + timedelta(days=6)) == 0
    assert not gh.repo(full_name).archived

    assert archive_ended_repositories(settings, utcnow() + timedelta(days=8)) == 1
    db.session.commit()
    assert gh.repo(full_name).archived
    assert archive_ended_repositories(settings, utcnow() + timedelta(days=9)) == 0  # recorded on the run
    run = student.run()
    assert run is not None and "github_archived_at" in run.context

    lea = gh.hub.account("lea")
    gh.hub.repo(*full_name.split("/")).collaborators.add("lea")
    as_lea = gh.client(lea)
    with pytest.raises(RequestFailed) as read_only:
        as_lea.rest.repos.create_or_update_file_contents(*full_name.split("/"), "x.txt", message="x",
                                                         content=base64.b64encode(b"x").decode())
    assert read_only.value.response.status_code == 403


def test_the_poller_archives_and_github_trouble_waits_for_the_next_hour(github_app: Flask, gh: GitHubTestServer,
                                                                       client: FlaskClient, tmp_path: Path) -> None:
    _, full_name = _stopped_run(github_app, gh, client, tmp_path)
    settings: Settings = github_app.extensions["lessonbot.settings"]
    github_app.extensions["lessonbot.settings"] = settings.model_copy(update={"github_archive_after_days": 0.0})
    gh.faults.script([503], endpoint="PATCH /repos/*")
    poller = Poller(github_app.extensions["lessonbot.settings"], github_app.extensions["lessonbot.catalog"])
    poller.run_once()
    assert not gh.repo(full_name).archived
    poller.next_prune = 0.0  # an hour later
    poller.run_once()
    assert gh.repo(full_name).archived
