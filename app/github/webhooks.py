"""GitHub webhooks: a signed delivery about a run's repository checks the run's current step at once.

The poller stays the safety net: a delivery that never comes only means the step is noticed at
the next poll. Deliveries are verified as GitHub signs them (`X-Hub-Signature-256`: HMAC-SHA256
of the body with the webhook secret) and remembered by `X-GitHub-Delivery`, so a replay is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.db import db, utcnow
from app.github.models import GitHubDelivery
from app.i18n import render_all
from app.lessons.catalog import Catalog
from app.lessons.engine import evaluate
from app.outbox.service import queue_reply
from app.runs.models import LessonRun, RunStatus
from app.runs.service import apply_progress, run_state
from app.settings import Settings

KEEP_DELIVERIES = timedelta(days=30)


class BadDelivery(Exception):
    """Unsigned, wrongly signed or replayed: nothing is done."""


@dataclass
class DeliveryResult:
    status: str  # checked | ignored
    passed: list[str] = field(default_factory=list)


def verify(secret: str, signature: str | None, body: bytes) -> None:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected, signature):
        raise BadDelivery("The X-Hub-Signature-256 header is missing or does not match the body.")


def remember_delivery(delivery_id: str | None) -> None:
    """Record the delivery (caller's transaction; the caller commits before acting); BadDelivery if seen before."""
    if not delivery_id or len(delivery_id) > 64:
        raise BadDelivery("The X-GitHub-Delivery header is missing.")
    db.session.execute(sa.delete(GitHubDelivery).where(GitHubDelivery.received_at < utcnow() - KEEP_DELIVERIES))
    try:
        with db.session.begin_nested():
            db.session.add(GitHubDelivery(delivery_id=delivery_id))
    except IntegrityError as error:
        raise BadDelivery("This delivery was already received; a replay is refused.") from error


def handle_delivery(full_name: str, catalog: Catalog, settings: Settings) -> DeliveryResult:
    """Check the current step of the active run whose repository this is; reply in the same transaction."""
    query = (sa.select(LessonRun)
             .where(LessonRun.status == RunStatus.ACTIVE, LessonRun.context["github_repo"].as_string() == full_name)
             .with_for_update())
    run = db.session.scalars(query).first()
    lesson = catalog.get(run.lesson_id) if run is not None else None
    if run is None or lesson is None:
        return DeliveryResult("ignored")  # an org-wide webhook also tells about templates and ended runs
    progress = evaluate(lesson, run_state(run), report_not_yet=False)
    if progress.result is not None and progress.result.status == "error":
        return DeliveryResult("ignored")  # GitHub trouble: the poller tries again
    apply_progress(run, progress, "webhook", catalog, settings)
    if progress.texts:
        queue_reply(run.student, "\n\n".join(render_all(progress.texts, run.student.language)))
    return DeliveryResult("checked", [step.step_id for step in progress.passed])
