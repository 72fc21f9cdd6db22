"""Calling Zulip: the official client, our own retries, and the shared rate budget.

The client's built-in retries are off: it would resend a message after a dropped
connection, and the outbox must decide that itself. Every call takes a budget token
(long-polls excepted: Zulip does not count them) and feeds the answer's
``X-RateLimit-*`` headers back into the budget.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import requests
import zulip

from app.settings import Settings

log = logging.getLogger(__name__)


class Budget(Protocol):
    def acquire(self) -> bool: ...
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


class Stopping(Exception):
    """The process is stopping; no call was made."""


class NotConfigured(Exception):
    pass


def make_client(settings: Settings) -> zulip.Client:
    missing = [name for name, value in (("LESSONBOT_ZULIP_SITE", settings.zulip_site),
                                        ("LESSONBOT_ZULIP_EMAIL", settings.zulip_email),
                                        ("LESSONBOT_ZULIP_API_KEY", settings.zulip_api_key)) if not value]
    if missing:
        raise NotConfigured(f"Zulip is not configured: set {', '.join(missing)}")
    assert settings.zulip_api_key is not None
    try:  # the client asks the server for its settings right away
        return zulip.Client(email=settings.zulip_email, api_key=settings.zulip_api_key.get_secret_value(),
                            site=settings.zulip_site, client="Lessonbot", retry_on_errors=False)
    except (requests.RequestException, zulip.UnrecoverableNetworkError) as error:
        raise ZulipError(f"connection failed ({error.__class__.__name__})", retryable=True, ambiguous=False) from error


class ZulipApi:
    """One bot's Zulip calls from one thread."""

    def __init__(self, client: zulip.Client, budget: Budget) -> None:
        self.client, self.budget = client, budget
        self.local = threading.local()
        client.ensure_session()
        assert client.session is not None
        client.session.hooks["response"].append(self._observe)

    @property
    def email(self) -> str:
        return str(self.client.email)

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.local.status = response.status_code
        self.local.retry_after = response.headers.get("Retry-After")
        remaining = response.headers.get("X-RateLimit-Remaining")
        reset = response.headers.get("X-RateLimit-Reset")
        if remaining is not None:
            reset_in = max(float(reset) - time.time(), 0.0) if reset else None
            self.budget.observe(int(float(remaining)), reset_in)

    def call(self, endpoint: str, method: str = "GET", params: dict[str, Any] | None = None, *,
             timeout: float = 15.0, budgeted: bool = True) -> dict[str, Any]:
        """One API call; raises ZulipError (or a subclass) unless Zulip answered success."""
        if budgeted and not self.budget.acquire():
            raise Stopping()
        self.local.status = None
        try:
            result: dict[str, Any] = self.client.call_endpoint(endpoint, method=method, request=params or {}, timeout=timeout)
        except requests.Timeout as error:
            raise ZulipError(f"{method} {endpoint}: timed out", retryable=True, ambiguous=True) from error
        except (requests.ConnectionError, zulip.UnrecoverableNetworkError) as error:
            raise ZulipError(f"{method} {endpoint}: connection failed ({error.__class__.__name__})",
                             retryable=True, ambiguous=True) from error
        if result.get("result") == "success":
            return result
        return self._raise_for(result, f"{method} {endpoint}")

    def _raise_for(self, result: dict[str, Any], what: str) -> dict[str, Any]:
        status = getattr(self.local, "status", None)
        code = result.get("code")
        message = f"{what}: {result.get('msg') or 'error'}"
        if code == "RATE_LIMIT_HIT" or status == 429:
            retry_after = _seconds(result.get("retry-after") or getattr(self.local, "retry_after", None))
            self.budget.block_for(retry_after)
            raise RateLimited(retry_after)
        if code == "BAD_EVENT_QUEUE_ID":
            raise BadEventQueue(message)
        if result.get("result") == "http-error" or (status is not None and status >= 500):
            raise ZulipError(f"{message} (HTTP {status})", retryable=True, ambiguous=True, code=code)
        raise ZulipError(message, retryable=False, code=code)


def _seconds(value: object, default: float = 1.0) -> float:
    """A Retry-After value in seconds (Zulip sends a number; HTTP dates are not worth parsing here)."""
    try:
        return max(float(value), 0.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
