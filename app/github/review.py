"""The bot's review of a student's pull request: changes requested, with a comment on one line.

The step that wants the review asks for it the first time its check runs (``request_review``,
in the caller's transaction, once per run and comment: the outbox item's dedupe key). The
outbox handler (app/github/delivery.py) posts it with :func:`post_review` and records the
comment's id in the run's context, where the check finds the thread to look for the student's
answer in.

Exactly once: the comment carries a marker, ``<!-- lessonbot:review:KEY -->``, and the
handler looks for its own comment with that marker on the pull request before it posts. The
attempt is committed as in flight before the review is sent, so a retry after a crash or a
timeout waits until the earlier request has surely ended and then finds what it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.github.client import GitHubApp
from app.i18n import Text
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.students.models import Student

CONTEXT_KEY = "github_reviews"  # the run context's record of posted reviews: {key: {comment_id, number, url}}


def marker(key: str) -> str:
    return f"<!-- lessonbot:review:{key} -->"


def review_key(head: str, path: str, line: int) -> str:
    return f"{head}/{path}:{line}"


def posted_review(run_context: dict[str, Any], key: str) -> dict[str, Any] | None:
    found = (run_context.get(CONTEXT_KEY) or {}).get(key)
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class ReviewRequest:
    """What the bot asks: on the pull request `number`, the comment on `path`:`line`."""

    key: str
    number: int
    path: str
    line: int
    comment: Any  # the lesson's text in both languages
    summary: Text


def request_review(run_context: dict[str, Any], request: ReviewRequest) -> OutboxStatus:
    """Queue the review once for this run (caller's transaction); the status of the one queued."""
    repo = str(run_context["github_repo"])
    dedupe_key = f"github-review:{repo}:{request.key}"[:128]
    status = db.session.scalar(sa.select(OutboxItem.status).where(OutboxItem.dedupe_key == dedupe_key))
    if status is not None:
        return status
    student = db.session.scalars(sa.select(Student).where(
        Student.email == str(run_context.get("student_email", "")).lower())).first()
    language = student.language if student is not None else "en"
    comment = getattr(request.comment, language, None) or request.comment.en
    payload = {"repo": repo, "key": request.key, "number": request.number, "path": request.path, "line": request.line,
               "body": request.summary.render(language), "comment": f"{comment}\n\n{marker(request.key)}"}
    db.session.add(OutboxItem(kind=OutboxKind.GITHUB_REVIEW, student_id=student.id if student else None,
                              payload=payload, dedupe_key=dedupe_key, status=OutboxStatus.PENDING,
                              next_attempt_at=utcnow()))
    return OutboxStatus.PENDING


def find_own_comment(github: GitHubApp, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The bot's comment with this review's marker on the pull request, if an attempt already posted it."""
    owner, _, name = str(payload["repo"]).partition("/")
    number = int(payload["number"])
    comments: list[Any] = github.call(f"review comments of #{number} in {owner}/{name}", lambda client: client.rest.pulls
                                      .list_review_comments(owner, name, number, per_page=100)).parsed_data
    wanted = marker(str(payload["key"]))
    for comment in comments:
        if comment.user is not None and comment.user.type == "Bot" and wanted in comment.body:
            return {"comment_id": comment.id, "number": number, "url": comment.html_url}
    return None


def post_review(github: GitHubApp, payload: dict[str, Any]) -> None:
    """Request changes on the pull request, with the comment on its line, in one review."""
    owner, _, name = str(payload["repo"]).partition("/")
    number = int(payload["number"])
    comment = {"path": str(payload["path"]), "line": int(payload["line"]), "side": "RIGHT",
               "body": str(payload["comment"])}
    github.call(f"the review of #{number} in {owner}/{name}", lambda client: client.rest.pulls.create_review(
        owner, name, number, event="REQUEST_CHANGES", body=str(payload["body"]), comments=[comment]))
