"""Ended runs' repositories are archived: read-only on GitHub, kept for the teacher, out of the student's way.

The poller calls this once an hour. Archiving is idempotent, so a crash between GitHub's answer
and the commit only means the repository is archived again next time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.db import db, utcnow
from app.github.client import GitHubApp, GitHubError, NotFound, shared_app
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings

log = logging.getLogger(__name__)
BATCH = 100


def due_for_archiving(settings: Settings, now: datetime) -> list[LessonRun]:
    """Ended runs with a GitHub repository not archived yet, ended long enough ago; oldest first."""
    cutoff = now - timedelta(days=settings.github_archive_after_days)
    query = (sa.select(LessonRun)
             .where(LessonRun.status != RunStatus.ACTIVE, LessonRun.finished_at <= cutoff,
                    LessonRun.context["github_repo"].as_string().is_not(None),
                    LessonRun.context["github_archived_at"].as_string().is_(None))
             .order_by(LessonRun.finished_at).limit(BATCH))
    return list(db.session.scalars(query))


def _archive(github: GitHubApp, owner: str, name: str) -> None:
    github.call(f"archiving {owner}/{name}", lambda client: client.rest.repos.update(owner, name, archived=True))


def archive_ended_repositories(settings: Settings, now: datetime | None = None) -> int:
    """Archive what is due (in the caller's transaction); how many. GitHub trouble stops the pass until next time."""
    if not settings.has_github:
        return 0
    now = now or utcnow()
    github = shared_app(settings)
    archived = 0
    for run in due_for_archiving(settings, now):
        owner, _, name = str(run.context["github_repo"]).partition("/")
        try:
            _archive(github, owner, name)
        except NotFound:
            log.warning("run %s: repository %s/%s is gone; nothing to archive", run.id, owner, name)
        except GitHubError as error:
            log.warning("archiving stopped at run %s: %s; trying again later", run.id, error)
            break
        run.context = {**run.context, "github_archived_at": now.isoformat()}
        archived += 1
    return archived
