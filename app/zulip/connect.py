"""Building a ZulipApi with the right shared budget for this database."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.db import db, is_postgresql
from app.settings import Settings
from app.workers.base import StopFlag, backoff
from app.zulip.api import Budget, ZulipApi, ZulipError, make_client
from app.zulip.budget import LocalBudget, RateBudget

log = logging.getLogger(__name__)
_local_budgets: dict[str, LocalBudget] = {}


def budget_for(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> Budget:
    """The bot's one budget: in PostgreSQL when there is one, else per process (demo)."""
    name = f"zulip:{settings.zulip_email}"
    if is_postgresql():
        return RateBudget(db.engine, name, settings.zulip_rate_per_minute, stopping=stopping)
    return _local_budgets.setdefault(name, LocalBudget(settings.zulip_rate_per_minute))


def connect(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> ZulipApi:
    """A Zulip API for this thread (inside an app context). Raises NotConfigured."""
    return ZulipApi(make_client(settings), budget_for(settings, stopping))


def connect_when_reachable(settings: Settings, stop: StopFlag) -> ZulipApi | None:
    """Connect, retrying with backoff while Zulip is unreachable; None if stopped first."""
    attempt = 0
    while not stop.stopping:
        try:
            return connect(settings, lambda: stop.stopping)
        except ZulipError as error:
            attempt += 1
            delay = backoff(attempt, initial=1.0, maximum=60.0)
            log.warning("cannot reach Zulip at %s (%s); retrying in %.1f s", settings.zulip_site, error, delay)
            stop.event.wait(delay)
    return None
