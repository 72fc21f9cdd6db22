"""Calling Zulip: the official client, our own retries, and the shared rate budget.

The client's built-in retries are off: it would resend a message after a dropped
connection, and the outbox must decide that itself. Every call takes a budget token
(the client's own ``GET /server_settings`` too: the server counts it) and feeds the
answer's ``X-RateLimit-*`` headers back into the budget; a 429 stops every caller of
that budget for exactly the ``retry-after`` the server gave.

Two budgets, because Zulip keeps two counts: the event queue (``GET``/``DELETE
/events``) is served by Tornado, whose rate limiter counts in its own memory
(``TornadoInMemoryRateLimiterBackend``), apart from every other call, counted by
Django. Under one shared budget the long-poll, which returns on every reply the bot
sends (the bot sees its own messages), would take a token from the replies each time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests
import zulip

from app.metrics.registry import ZULIP_RATE_LIMITED
from app.settings import Settings

log = logging.getLogger(__name__)


class Budget(Protocol):
    def acquire(self, *, final: bool = False) -> bool: ...
    def block_for(self, seconds: float) -> None: ...
    def observe(self, remaining: int | None, reset_in: float | None) -> None: ...


class ZulipError(Exception):
    """A failed call. ``retryable``: trying later may work. ``ambiguous``: it may have taken effect."""

    def __init__(self, message: str, *, retryable: bool, ambiguous: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.retryable, self.ambiguous, self.code = retryable, ambiguous, code


class RateLimited(ZulipError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after:g} s", retryable=True, code="RATE_LIMIT_HIT")
        self.retry_after = retry_after


class BadEventQueue(ZulipError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True, code="BAD_EVENT_QUEUE_ID")


class Unauthorized(ZulipError):
    """The server refused the bot's email or API key (HTTP 401): a configuration problem, not a failed item."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True, code="UNAUTHORIZED")


class Stopping(Exception):
    """The process is stopping; no call was made."""


class NotConfigured(Exception):
    pass


KeySource = Callable[[], str]
UNAUTHORIZED_CODES = ("UNAUTHORIZED", "INVALID_API_KEY", "USER_DEACTIVATED", "REALM_DEACTIVATED")
BAD_KEY_HINT = "the server refused the bot's email or API key (check LESSONBOT_ZULIP_EMAIL and LESSONBOT_ZULIP_API_KEY)"


def check_configured(settings: Settings) -> None:
    """Raise NotConfigured naming every missing Zulip setting."""
    missing = [name for name, value in (("LESSONBOT_ZULIP_SITE", settings.zulip_site),
                                        ("LESSONBOT_ZULIP_EMAIL", settings.zulip_email),
                                        ("LESSONBOT_ZULIP_API_KEY", settings.zulip_api_key)) if not value]
    if missing:
        raise NotConfigured(f"Zulip is not configured: set {', '.join(missing)}")


def classify(result: dict[str, Any], what: str, status: int | None, retry_after: object) -> ZulipError:
    """The error for a failed answer: rate limit, bad key, expired queue, server trouble or a refusal."""
    code = result.get("code")
    message = f"{what}: {result.get('msg') or 'error'}"
    status = status if status is not None else result.get("status_code")
    if code == "RATE_LIMIT_HIT" or status == 429:
        return RateLimited(_seconds(result.get("retry-after") or retry_after))
    if status == 401 or code in UNAUTHORIZED_CODES:
        return Unauthorized(f"{what}: {BAD_KEY_HINT}")
    if code == "BAD_EVENT_QUEUE_ID":
        return BadEventQueue(message)
    if result.get("result") == "http-error" or (status is not None and status >= 500):
        return ZulipError(f"{message} (HTTP {status})", retryable=True, ambiguous=True, code=code)
    return ZulipError(message, retryable=False, code=code)


class _BudgetedClient(zulip.Client):
    """The official client, whose start-up ``GET /server_settings`` takes a budget token and fails cleanly.

    ``zulip.Client()`` asks for the server settings in its constructor and only
    ``assert``s the answer: a 401 (wrong key) or a 5xx would surface as an AssertionError.
    """

    def __init__(self, budget: Budget, **kwargs: Any) -> None:
        self.lessonbot_budget = budget
        super().__init__(**kwargs)

    def get_server_settings(self) -> dict[str, Any]:
        if not self.lessonbot_budget.acquire():
            raise Stopping()
        self.ensure_session()
        assert self.session is not None
        answer: dict[str, Any] = {}

        def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            answer.update(status=response.status_code, retry_after=response.headers.get("Retry-After"))

        self.session.hooks["response"].append(remember)
        try:
            result = super().get_server_settings()
        finally:
            self.session.hooks["response"].remove(remember)
        if result.get("result") != "success" or not result.get("zulip_version"):
            error = classify(result, "GET server_settings", answer.get("status"), answer.get("retry_after"))
            if isinstance(error, RateLimited):
                ZULIP_RATE_LIMITED.inc()
                self.lessonbot_budget.block_for(error.retry_after)
            raise error
        return result


class ZulipApi:
    """The bot's Zulip calls, shared by every thread of a process (one client, one connection pool).

    The client is built on first use, through the budget. A 401 drops it: the next call
    reads the API key again (``key_source``) and builds a new one, so a rotated key is
    picked up without a restart once the configuration is fixed.
    """

    def __init__(self, site: str, email: str, key_source: KeySource, budget: Budget,
                 events_budget: Budget | None = None) -> None:
        self.site, self._email, self.key_source, self.budget = site, email, key_source, budget
        self.events_budget = events_budget or budget  # the event queue's calls, counted apart by Zulip's Tornado
        self.local = threading.local()
        self._lock = threading.Lock()
        self._client: _BudgetedClient | None = None
        self.clients_built = 0

    @property
    def email(self) -> str:
        return self._email

    @property
    def feature_level(self) -> int:
        """The server's ``zulip_feature_level`` (asks the server on first use)."""
        return int(self.client().feature_level)

    def client(self) -> zulip.Client:
        """The shared client, built (through the budget) when there is none."""
        with self._lock:
            if self._client is None:
                self.local.budget = self.budget  # the start-up GET /server_settings is Django's to count
                try:
                    client = _BudgetedClient(self.budget, email=self._email, api_key=self.key_source(), site=self.site,
                                             client="Lessonbot", retry_on_errors=False)
                except (requests.RequestException, zulip.UnrecoverableNetworkError) as error:
                    raise ZulipError(f"connection failed ({error.__class__.__name__})",
                                     retryable=True) from error
                client.ensure_session()
                assert client.session is not None
                _read_environment_once(client.session, self.site)
                client.session.hooks["response"].append(self._observe)
                self._client = client
                self.clients_built += 1
            return self._client

    def _forget(self, client: zulip.Client) -> None:
        with self._lock:
            if self._client is client:
                self._client = None

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.local.status = response.status_code
        self.local.retry_after = response.headers.get("Retry-After")
        remaining = response.headers.get("X-RateLimit-Remaining")
        reset = response.headers.get("X-RateLimit-Reset")
        if remaining is not None:
            reset_in = max(float(reset) - time.time(), 0.0) if reset else None
            getattr(self.local, "budget", self.budget).observe(int(float(remaining)), reset_in)

    def call(self, endpoint: str, method: str = "GET", params: dict[str, Any] | None = None, *,
             timeout: float = 15.0, final: bool = False) -> dict[str, Any]:
        """One API call (it takes a budget token first); raises ZulipError (or a subclass) unless Zulip answered success.

        ``final``: the last call of a stopping process, made even though it is stopping.
        """
        client = self.client()
        budget = self.events_budget if endpoint == "events" else self.budget
        if not budget.acquire(final=final):
            raise Stopping()
        self.local.status, self.local.budget = None, budget
        try:
            result: dict[str, Any] = client.call_endpoint(endpoint, method=method, request=params or {}, timeout=timeout)
        except requests.Timeout as error:
            raise ZulipError(f"{method} {endpoint}: timed out", retryable=True, ambiguous=True) from error
        except (requests.ConnectionError, zulip.UnrecoverableNetworkError) as error:
            raise ZulipError(f"{method} {endpoint}: connection failed ({error.__class__.__name__})",
                             retryable=True, ambiguous=True) from error
        if result.get("result") == "success":
            return result
        failure = classify(result, f"{method} {endpoint}", getattr(self.local, "status", None),
                           getattr(self.local, "retry_after", None))
        if isinstance(failure, RateLimited):
            ZULIP_RATE_LIMITED.inc()
            budget.block_for(failure.retry_after)
        elif isinstance(failure, Unauthorized):
            self._forget(client)
        raise failure


def _read_environment_once(session: requests.Session, site: str) -> None:
    """What requests reads from the environment on every request, read once for this client.

    With ``trust_env`` a Session scans every environment variable twice per request for
    proxy settings: a fifth of a reply's CPU in the dispatcher. The same settings are
    taken here, when the client is built (again after a 401): ``HTTPS_PROXY``/``NO_PROXY``
    and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` still apply; changing them needs a restart.
    """
    session.proxies.update(requests.utils.get_environ_proxies(site))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def _seconds(value: object, default: float = 1.0) -> float:
    """A Retry-After value in seconds (Zulip sends a number; HTTP dates are not worth parsing here)."""
    try:
        return max(float(value), 0.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
