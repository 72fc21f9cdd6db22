"""Polling GitHub within the installation's budget: pauses on rate limits, free 304s, 404s backed off, spread."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import db, utcnow
from app.github.client import RateLimited, shared_app
from app.runs.models import LessonRun
from app.runs.service import next_check_at
from app.settings import Settings
from app.workers.poller import Poller
from tests.github.test_github_basics_lesson import GitHubStudent, _linked
from tests.github_server.api import secondary_limit
from tests.github_server.server import GitHubTestServer

INTERVAL = 900.0


def _settings(app: Flask) -> Settings:
    settings: Settings = app.extensions["lessonbot.settings"]
    return settings


def _started(app: Flask, gh: GitHubTestServer, client: FlaskClient, tmp_path: Path, login: str) -> GitHubStudent:
    """A student on step 2 of github-basics (a branch), their invitation accepted and seen."""
    student = _linked(client, gh, tmp_path, login)
    student.say("start github-basics")
    assert "Your lesson repository" in student.outbox(app)  # set up through the outbox
    student.accept_invitation()
    assert "Step 1 passed" in student.poll(app)
    return student


def _run(student: GitHubStudent) -> LessonRun:
    run = student.run()
    assert run is not None
    return run


def _rate_limited(gh: GitHubTestServer, how: str) -> None:
    if how == "secondary 403":
        gh.faults.script([secondary_limit(120)], endpoint="GET /repos/*")
    elif how == "429":
        gh.faults.script([secondary_limit(120, status=429)], endpoint="GET /repos/*")
    else:  # the hour's budget spent: 403 with X-RateLimit-Remaining: 0 until the reset
        gh.set_rate_limit(0, window_seconds=120)


@pytest.mark.parametrize("how", ["secondary 403", "429", "remaining 0"])
def test_a_rate_limit_pauses_github_checks_without_charging_the_run(github_app: Flask, gh: GitHubTestServer,
                                                                    client: FlaskClient, tmp_path: Path,
                                                                    how: str) -> None:
    student = _started(github_app, gh, client, tmp_path, "rae")
    failures = _run(student).check_failures
    student.branch("add-notes")  # a change the pause keeps the poller from seeing yet
    _rate_limited(gh, how)

    assert student.poll(github_app) == ""
    run = _run(student)
    assert run.check_failures == failures and run.step_index == 1  # GitHub's wait, not the student's failure
    assert run.next_check_at is not None and run.next_check_at >= utcnow() + timedelta(seconds=110)
    assert time.time() + 110 < shared_app(_settings(github_app)).budget.paused_until

    asked = len(gh.request_log)
    run.next_check_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    poller = Poller(_settings(github_app), github_app.extensions["lessonbot.catalog"])
    poller.run_once()  # paused: the due GitHub run is not even claimed
    due = _run(student).next_check_at
    assert len(gh.request_log) == asked and due is not None and due <= utcnow()
    assert "is not answering" not in student.new_replies()

    gh.set_rate_limit(5000)
    shared_app(_settings(github_app)).budget.paused_until = time.time()  # the reset GitHub named has come
    assert "Step 2 passed" in student.poll(github_app)


def test_an_answer_below_the_margin_pauses_before_the_limit_is_hit(github_app: Flask, gh: GitHubTestServer,
                                                                   client: FlaskClient, tmp_path: Path) -> None:
    student = _started(github_app, gh, client, tmp_path, "sol")
    repo = gh.repo(str(_run(student).context["github_repo"]))
    gh.set_rate_limit(10, window_seconds=300)
    budget = shared_app(_settings(github_app)).budget
    for n in range(10):  # each poll sees one more branch add-notes-…: a full answer that GitHub counts
        repo.branches[f"add-notes-{n}"] = repo.branches["main"]
        student.poll(github_app)
        if budget.paused_until > time.time():
            break
    assert gh.rate_used() == 9  # paused with GitHub's margin (a tenth) left, before a 403
    assert budget.paused_until >= time.time() + 250


def test_a_304_is_free_and_the_budget_counts_only_full_answers(github_app: Flask, gh: GitHubTestServer,
                                                               client: FlaskClient, tmp_path: Path) -> None:
    student = _started(github_app, gh, client, tmp_path, "uma")
    budget = shared_app(_settings(github_app)).budget
    student.poll(github_app)
    charged, free, used = budget.charged, budget.free, gh.rate_used()

    for _ in range(5):
        student.poll(github_app)

    assert (budget.charged, budget.free - free) == (charged, 5)
    assert gh.rate_used() == used
    student.branch("add-notes")
    assert "Step 2 passed" in student.poll(github_app)
    assert budget.charged > charged


def test_polling_reads_wait_for_the_budget_s_next_token(github_app: Flask, gh: GitHubTestServer) -> None:
    """100 an hour less the margin: the bucket holds a minute's worth, 1.5 answers; then reads pause."""
    github_app.extensions["lessonbot.settings"] = _settings(github_app).model_copy(
        update={"github_requests_per_hour": 100, "github_api_url": gh.url})
    template = gh.add_template("tpl", {"README.md": b"hi\n"})
    for name in ("one", "two"):
        gh.hub.generate(template, gh.org, name, None, True)
    github = shared_app(_settings(github_app))
    read = lambda name: github.conditional(  # noqa: E731
        f"refs:{name}", name, lambda client, headers: client.rest.git.list_matching_refs(
            gh.org.login, name, "heads/main", headers=headers))
    read("one")
    asked = len(gh.request_log)
    with pytest.raises(RateLimited) as paused:
        read("two")
    assert len(gh.request_log) == asked  # nothing was asked
    assert 15 < paused.value.until - time.time() <= 3600 / 90 + 1  # half a token short: 20 s


def test_a_missing_repository_is_not_asked_again_every_pass(github_app: Flask, gh: GitHubTestServer,
                                                            client: FlaskClient, tmp_path: Path) -> None:
    student = _started(github_app, gh, client, tmp_path, "vic")
    full_name = str(_run(student).context["github_repo"])
    del gh.hub.repos[full_name.lower()]  # deleted by hand on GitHub
    asked = len(gh.request_log)

    student.poll(github_app)
    assert len(gh.request_log) == asked + 1
    for _ in range(3):
        student.poll(github_app)
    assert len(gh.request_log) == asked + 1  # remembered: not asked for a poll interval
    assert "is not found on GitHub" in student.say("check")

    missing = shared_app(_settings(github_app))._missing
    [(key, first)] = missing.items()
    assert INTERVAL - 5 < first.until - time.time() <= INTERVAL
    first.until = time.time()  # that interval has passed
    student.poll(github_app)
    assert len(gh.request_log) == asked + 2 and missing[key].times == 2
    assert 2 * INTERVAL - 5 < missing[key].until - time.time() <= 2 * INTERVAL  # backed off


def test_runs_started_together_fall_due_over_the_whole_interval(github_app: Flask) -> None:
    catalog, settings, now = github_app.extensions["lessonbot.catalog"], _settings(github_app), utcnow()
    first = [next_check_at("github-basics", 1, 0, catalog, settings, now) for _ in range(10_000)]
    offsets = [(when - now).total_seconds() for when in first if when is not None]
    assert len(offsets) == 10_000 and all(0 <= offset <= INTERVAL for offset in offsets)
    per_second = Counter(int(offset) for offset in offsets)
    assert max(per_second.values()) < 40  # 11 a second on average; never a burst of thousands
    assert len(per_second) > INTERVAL * 0.95
    later = {next_check_at("github-basics", 1, failures, catalog, settings, now) for failures in (1, 2, 7)}
    assert later == {now + timedelta(seconds=INTERVAL)}  # then exactly once per interval


def test_a_missed_webhook_is_noticed_by_polling_within_the_interval(github_app: Flask, gh: GitHubTestServer,
                                                                    client: FlaskClient, tmp_path: Path) -> None:
    github_app.extensions["lessonbot.settings"] = _settings(github_app).model_copy(
        update={"github_poll_interval_seconds": 2.0})
    student = _started(github_app, gh, client, tmp_path, "wes")
    student.branch("add-notes")  # no webhook is configured: nothing tells the app
    pushed = time.monotonic()
    poller = Poller(_settings(github_app), github_app.extensions["lessonbot.catalog"])
    replies = ""
    while "Step 2 passed" not in replies and time.monotonic() - pushed < 10:
        poller.run_once()
        replies += student.new_replies()
        time.sleep(0.1)
    assert "Step 2 passed" in replies
    assert time.monotonic() - pushed <= 2.0 + 1.0
