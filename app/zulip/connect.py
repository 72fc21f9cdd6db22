"""The process's one ZulipApi per bot, with the right shared budget for this database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.db import db, is_postgresql
from app.settings import ConfigError, Settings, load_settings
from app.zulip.api import Budget, ZulipApi, check_configured
from app.zulip.budget import LocalBudget, RateBudget

log = logging.getLogger(__name__)
_local_budgets: dict[str, LocalBudget] = {}
_apis: dict[tuple[str, str, str], ZulipApi] = {}
_apis_lock = threading.Lock()


def budget_for(settings: Settings, stopping: Callable[[], bool] = lambda: False, *, events: bool = False) -> Budget:
    """The bot's budget (``events``: its event queue's, which Zulip counts apart): in PostgreSQL when there
    is one, else per process (demo)."""
    name = f"zulip:{settings.zulip_email}" + (":events" if events else "")
    if is_postgresql():
        return RateBudget(db.engine, name, settings.zulip_rate_per_minute, stopping=stopping)
    return _local_budgets.setdefault(name, LocalBudget(settings.zulip_rate_per_minute))


def current_api_key(settings: Settings) -> str:
    """The bot's API key as configured now.

    The environment and the env file are read again, so a key fixed after a rotation is
    used without restarting the process; if they now name another bot or are broken,
    the key the process started with stays.
    """
    try:
        latest = load_settings()
    except ConfigError:
        latest = settings
    if latest.zulip_site == settings.zulip_site and latest.zulip_email == settings.zulip_email and latest.zulip_api_key:
        return latest.zulip_api_key.get_secret_value()
    assert settings.zulip_api_key is not None
    return settings.zulip_api_key.get_secret_value()


def connect(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> ZulipApi:
    """A new ZulipApi (inside an app context); it reaches Zulip on its first call. Raises NotConfigured."""
    check_configured(settings)
    assert settings.zulip_site is not None and settings.zulip_email is not None
    return ZulipApi(settings.zulip_site, settings.zulip_email, lambda: current_api_key(settings),
                    budget_for(settings, stopping), budget_for(settings, stopping, events=True))


def shared_api(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> ZulipApi:
    """The process's one ZulipApi for this bot: every thread and check shares its client and connection pool.

    ``stopping`` is taken from the first caller (a worker's main(), before its threads start).
    """
    check_configured(settings)
    key = (str(settings.zulip_site), str(settings.zulip_email), str(db.engine.url))
    with _apis_lock:
        api = _apis.get(key)
        if api is None:
            api = _apis[key] = connect(settings, stopping)
        return api


def describe_bot(settings: Settings) -> list[str]:
    """Lines about the bot and its server; raises NotConfigured or ZulipError."""
    api = connect(settings)
    me = api.call("users/me", "GET", timeout=10)
    server = api.call("server_settings", "GET", timeout=10)
    return [
        f"bot:     {me.get('full_name')} <{me.get('email')}> (user id {me.get('user_id')})",
        f"server:  {server.get('realm_name', '?')} at {settings.zulip_site}",
        f"version: Zulip {server.get('zulip_version', '?')} (feature level {server.get('zulip_feature_level', '?')})",
    ]
