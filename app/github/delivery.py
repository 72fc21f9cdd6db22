"""Delivering GitHub effects from the outbox: a run's repository set up, the bot's review posted.

Both are unordered (each item is its own queue) and both look before they act, so a retry
never makes a thing twice: the repository by its name (app/github/repos.py), the review by
the marker in its comment (app/github/review.py). GitHub down, rate-limited (429, secondary
limits) or timing out is retried with the one back-off, at least as long as GitHub's
Retry-After says; a refused App key pauses the handler without charging the item
(:class:`~app.outbox.dispatcher.Unavailable`). What cannot work (no such user, no template)
is told to the student at once; what keeps failing is parked, with its reason, for admins.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.github.client import GitHubApp, GitHubError, NotConfigured, RateLimited, shared_app
from app.github.repos import SetupFailed, repository_texts, set_up
from app.github.review import CONTEXT_KEY, find_own_comment, post_review
from app.i18n import Text, render_all
from app.loop import backoff
from app.outbox.dispatcher import Handler, Outcome, Unavailable
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.outbox.service import queue_reply
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings
from app.students.models import Student

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 12  # with the back-off below, about an hour of GitHub trouble before the student is told


def _run_of(repo: str, *, lock: bool = False) -> LessonRun | None:
    """The active run whose repository this is."""
    query = sa.select(LessonRun).where(LessonRun.status == RunStatus.ACTIVE,
                                       LessonRun.context["github_repo"].as_string() == repo)
    return db.session.scalars(query.with_for_update() if lock else query).first()


def _tell(item: OutboxItem, texts: list[Text]) -> None:
    student = db.session.get(Student, item.student_id) if item.student_id is not None else None
    if student is not None:
        queue_reply(student, "\n\n".join(render_all(texts, student.language)))


class GitHubDelivery:
    """What both handlers share: the App's connection, the attempt's bookkeeping, GitHub's errors."""

    name = "GitHub"
    kinds: tuple[OutboxKind, ...] = ()
    ordered = False
    lock_class = 7306

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def github(self) -> GitHubApp:
        try:
            return shared_app(self.settings)
        except GitHubError as error:  # not configured, or the key unreadable: no item's fault
            raise Unavailable(str(error)) from error

    def deliver(self, item: OutboxItem) -> Outcome:
        if _run_of(str(item.payload["repo"])) is None:
            item.mark_sent()
            item.last_error = "the run ended before this was done; nothing to do"
            return Outcome.SENT
        uncharged = item.attempts  # what the item had before this attempt: restored when it is no item's fault
        try:
            return self.attempt(item)
        except SetupFailed as failure:
            return self.give_up(item, str(failure), failure.text, for_admins=not failure.students_mistake)
        except NotConfigured as error:
            raise Unavailable(str(error)) from error
        except GitHubError as error:
            return self.failed_attempt(item, error, uncharged)

    def attempt(self, item: OutboxItem) -> Outcome:
        raise NotImplementedError

    def mark_in_flight(self, item: OutboxItem) -> None:
        """Commit the attempt before the request leaves: after a crash or a timeout the next attempt comes only
        once this request has surely ended, and looks for its effect first."""
        item.attempts += 1
        item.last_attempt_at = utcnow()
        item.next_attempt_at = utcnow() + timedelta(seconds=self.settings.github_request_timeout_seconds * 2 + 5)
        db.session.commit()

    def failed_attempt(self, item: OutboxItem, error: GitHubError, uncharged: int) -> Outcome:
        if error.status == 401:  # the App's credentials: every item would fail the same way, none is charged
            item.attempts, item.next_attempt_at = uncharged, utcnow()
            db.session.commit()
            raise Unavailable(str(error)) from error
        item.last_error = str(error)[:2000]
        if isinstance(error, RateLimited):  # GitHub (or our budget) refuses every request for now: no item's fault
            item.attempts = uncharged
            wait = error.retry_after.total_seconds() if error.retry_after else 0.0
            item.next_attempt_at = utcnow() + timedelta(seconds=backoff(1, initial=0.0, maximum=0.0, at_least=wait))
            log.info("outbox %s (%s): %s; trying again at %s", item.id, item.kind.value, error,
                     item.next_attempt_at.isoformat(timespec="seconds"))
            return Outcome.RETRY
        if not error.retryable or item.attempts >= MAX_ATTEMPTS:
            return self.give_up(item, f"gave up after {item.attempts} attempt(s): {error}", self.gave_up_text(item),
                                for_admins=True)
        wait = backoff(item.attempts, initial=2.0, maximum=600.0,
                       at_least=error.retry_after.total_seconds() if error.retry_after else None)
        item.next_attempt_at = utcnow() + timedelta(seconds=wait)
        log.warning("outbox %s (%s): %s; trying again in %.0f s", item.id, item.kind.value, error, wait)
        return Outcome.RETRY

    def gave_up_text(self, item: OutboxItem) -> Text:
        raise NotImplementedError

    def give_up(self, item: OutboxItem, reason: str, text: Text, *, for_admins: bool) -> Outcome:
        """Tell the student; park the item for admins unless it was the student's own mistake."""
        self.after_giving_up(item, reason)
        _tell(item, [text])
        if not for_admins:
            item.mark_sent()
            item.last_error = reason[:2000]
            return Outcome.SENT
        item.status = OutboxStatus.FAILED
        item.last_error = reason[:2000]
        log.warning("outbox %s (%s) failed: %s", item.id, item.kind.value, reason)
        return Outcome.FAILED

    def after_giving_up(self, item: OutboxItem, reason: str) -> None:
        pass


class RepositorySetup(GitHubDelivery):
    """A new run's repository: generated from the lesson's template, the student invited, the link sent."""

    name = "GitHub repositories"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.GITHUB_REPO,)
    lock_class = 7306

    def attempt(self, item: OutboxItem) -> Outcome:
        github = self.github()
        self.mark_in_flight(item)
        ready = set_up(github, item.payload)
        run = _run_of(str(item.payload["repo"]), lock=True)
        if run is not None:  # still going: it may have ended while GitHub worked (then archiving tidies up)
            run.context = {**run.context, "github_url": ready.html_url, "clone_url": ready.clone_url}
            _tell(item, repository_texts(run.context))
        item.mark_sent()
        item.external_id = ready.full_name[:100]
        log.info("run repository %s ready", ready.full_name)
        return Outcome.SENT

    def gave_up_text(self, item: OutboxItem) -> Text:
        return Text("github.setup_failed")

    def after_giving_up(self, item: OutboxItem, reason: str) -> None:
        """The run cannot go on without its repository: it ends, and `start` tries again from the beginning."""
        run = _run_of(str(item.payload["repo"]), lock=True)
        if run is not None:
            run.status, run.finished_at, run.next_check_at = RunStatus.STOPPED, utcnow(), None
            run.context = {**run.context, "ended_by": {"github": reason[:300], "at": utcnow().isoformat()}}


class ReviewPosting(GitHubDelivery):
    """The bot's review of a student's pull request, posted once; its comment recorded in the run's context."""

    name = "GitHub reviews"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.GITHUB_REVIEW,)
    lock_class = 7307

    def attempt(self, item: OutboxItem) -> Outcome:
        github = self.github()
        found = find_own_comment(github, item.payload)
        if found is None:
            self.mark_in_flight(item)
            post_review(github, item.payload)
            found = find_own_comment(github, item.payload)
            if found is None:
                raise GitHubError("the review was posted but its comment is not listed yet", retryable=True)
        self._record(item.payload, found)
        item.mark_sent()
        item.external_id = str(found["comment_id"])
        return Outcome.SENT

    @staticmethod
    def _record(payload: dict[str, Any], found: dict[str, Any]) -> None:
        run = _run_of(str(payload["repo"]), lock=True)
        if run is not None:
            reviews = {**(run.context.get(CONTEXT_KEY) or {}), str(payload["key"]): found}
            run.context = {**run.context, CONTEXT_KEY: reviews}

    def gave_up_text(self, item: OutboxItem) -> Text:
        return Text("github.review_failed", number=item.payload.get("number", "?"))


def github_handlers(settings: Settings) -> list[Handler]:
    return [RepositorySetup(settings), ReviewPosting(settings)]
