"""The connection to GitHub as the course's GitHub App, through githubkit.

The App signs a JWT with its private key to ask for an installation token (an hour's
access to the organization's repositories); githubkit keeps the token and asks for a new
one a minute before it expires. Each connection has its own token cache: after a key
rotation or a revoked token, a 401 drops the cache and the call is tried once more with
fresh credentials. githubkit's HTTP cache and automatic retries are off: polling uses
explicit conditional requests (`ETagCache`), and a check answers at once rather than
sleeping through a rate limit (the poller tries again later). Every answer is counted against the
installation's budget (`app/github/budget.py`): a rate-limit answer pauses every request of the
process until the time GitHub named, and a conditional read also needs the budget's token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub, Response
from githubkit.cache import MemCacheStrategy
from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

from app.github.budget import Budget, Paused
from app.loop import backoff
from app.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ETAG_CACHE_ENTRIES = 50_000
MISSING_MAX_SECONDS = 86_400.0  # a repository that answers 404 is asked again at least daily


class GitHubError(Exception):
    """A failed call. ``retryable``: trying later may work; ``status``: GitHub's HTTP status, if it answered."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retryable, self.status, self.retry_after = retryable, status, retry_after


class NotConfigured(GitHubError):
    def __init__(self) -> None:
        super().__init__("GitHub is not configured: set LESSONBOT_GITHUB_APP_ID, LESSONBOT_GITHUB_PRIVATE_KEY_FILE "
                         "(or LESSONBOT_GITHUB_PRIVATE_KEY) and LESSONBOT_GITHUB_ORG (see README, GitHub)",
                         retryable=False)


class NotFound(GitHubError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: not found on GitHub", retryable=False, status=404)


class RateLimited(GitHubError):
    """GitHub's rate limit (or ours, app/github/budget.py): nothing is asked before ``until`` (epoch seconds)."""

    def __init__(self, message: str, until: float, status: int | None = None) -> None:
        super().__init__(message, retryable=True, status=status, retry_after=timedelta(seconds=max(until - time.time(), 0)))
        self.until = until


def private_key(settings: Settings) -> str:
    """The App's private key (PEM), from the setting or the 0600 file; GitHubError if it is not a key."""
    if settings.github_private_key is not None:
        pem = settings.github_private_key.get_secret_value().replace("\\n", "\n")
        where = "LESSONBOT_GITHUB_PRIVATE_KEY"
    elif settings.github_private_key_file is not None:
        try:
            pem = settings.github_private_key_file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise GitHubError(f"cannot read LESSONBOT_GITHUB_PRIVATE_KEY_FILE {settings.github_private_key_file} "
                              f"({error})", retryable=False) from None
        where = f"LESSONBOT_GITHUB_PRIVATE_KEY_FILE {settings.github_private_key_file}"
    else:
        raise NotConfigured()
    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise GitHubError(f"{where} is not a PEM private key (download one from the App's settings page)",
                          retryable=False) from None
    return pem


def describe_failure(error: GitHubException, what: str) -> GitHubError:
    """githubkit's exception as one GitHubError that says what failed and whether to try again."""
    if isinstance(error, RateLimitExceeded):
        wait = error.retry_after.total_seconds()
        return RateLimited(f"{what}: GitHub's rate limit; try again in {wait:.0f} s", time.time() + max(wait, 1.0),
                           error.response.status_code)
    if isinstance(error, RequestFailed):
        status = error.response.status_code
        if status == 429:  # too many requests without a time named: GitHub's advice is a minute
            return RateLimited(f"{what}: GitHub answered 429", time.time() + 60.0, status)
        try:
            message = str(error.response.json().get("message", ""))
        except ValueError:
            message = ""
        if status == 404:
            return NotFound(what)
        return GitHubError(f"{what}: GitHub answered {status} {message}".rstrip(), retryable=status >= 500 or status == 401,
                           status=status)
    if isinstance(error, RequestTimeout | RequestError):
        return GitHubError(f"{what}: GitHub did not answer ({type(error).__name__})", retryable=True)
    return GitHubError(f"{what}: {error}", retryable=False)


class KeptTransport(httpx.HTTPTransport):
    """One connection pool and TLS context for all of a connection's requests.

    Outside a ``with`` block githubkit builds an httpx client per request, and with it a transport
    that loads the CA bundle (about 20 ms of CPU) and opens a new connection; given this transport,
    every request reuses it. githubkit closes its per-request client, which would close the pool.
    """

    def close(self) -> None:
        """Kept open for the next request (the pool goes with the process)."""


@dataclass
class Cached:
    etag: str
    data: Any


@dataclass
class Missing:
    """A read that answered 404: not asked again before ``until``; ``times`` in a row so far."""

    until: float
    times: int


ABSENT = object()  # an immutable read's remembered 404


class ETagCache:
    """The last answer to each GET with its ETag: asked again with If-None-Match, GitHub answers a free 304."""

    def __init__(self, entries: int = ETAG_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._items: OrderedDict[str, Cached] = OrderedDict()
        self._lock = threading.Lock()
        self.not_modified = 0
        self.modified = 0

    def get(self, key: str) -> Cached | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, etag: str, data: Any) -> None:
        with self._lock:
            self._items[key] = Cached(etag, data)
            self._items.move_to_end(key)
            while len(self._items) > self._entries:
                self._items.popitem(last=False)

    def count(self, unchanged: bool) -> None:
        with self._lock:
            if unchanged:
                self.not_modified += 1
            else:
                self.modified += 1


class GitHubApp:
    """The App and its installation on the course's organization."""

    def __init__(self, settings: Settings) -> None:
        if not settings.has_github:
            raise NotConfigured()
        assert settings.github_app_id is not None and settings.github_org is not None
        self.settings = settings
        self.app_id = settings.github_app_id
        self.org = settings.github_org
        self.etags = ETagCache()
        self.budget = Budget(settings.github_requests_per_hour)
        self._missing: dict[str, Missing] = {}
        self._immutable: OrderedDict[str, Any] = OrderedDict()
        self._key = private_key(settings)
        self._transport = KeptTransport()
        self._lock = threading.Lock()
        self._installation_id: int | None = None
        self._installation: GitHub[AppInstallationAuthStrategy] | None = None

    def _options(self) -> dict[str, Any]:
        return {"base_url": self.settings.github_api_url, "http_cache": False, "auto_retry": False,
                "timeout": self.settings.github_request_timeout_seconds, "user_agent": "Lessonbot",
                "cache_strategy": MemCacheStrategy(), "transport": self._transport}

    def as_app(self) -> GitHub[AppAuthStrategy]:
        """A client authenticated as the App itself (JWT): /app, the installation, tokens."""
        return GitHub(AppAuthStrategy(self.app_id, self._key), **self._options())

    def installation_id(self) -> int:
        """The App's installation on the organization (asked once per process)."""
        with self._lock:
            if self._installation_id is None:
                app = self.as_app()
                try:
                    found = app.rest.apps.get_org_installation(self.org).parsed_data
                except GitHubException as error:
                    raise self.explain(error, f"the App's installation on {self.org}") from None
                self._installation_id = found.id
            return self._installation_id

    def _client(self) -> GitHub[AppInstallationAuthStrategy]:
        installation_id = self.installation_id()
        with self._lock:
            if self._installation is None:
                auth = AppInstallationAuthStrategy(self.app_id, self._key, installation_id)
                self._installation = GitHub(auth, **self._options())
            return self._installation

    def call(self, what: str, request: Callable[[GitHub[AppInstallationAuthStrategy]], Response[T]], *,
             token: bool = False) -> Response[T]:
        """One call as the installation; a 401 (rotated key, revoked token) is tried once more with fresh tokens.

        Nothing is asked while the budget is paused (RateLimited); ``token``: a read that also needs one of
        the budget's tokens (polling). Each answer is counted and its rate-limit headers read.
        """
        for attempt in (1, 2):
            try:
                self.budget.admit(token=token)
            except Paused as paused:
                raise RateLimited(f"{what}: {paused}", paused.until) from None
            client = self._client()
            try:
                response = request(client)
            except GitHubException as error:
                failure = self.explain(error, what)
                if isinstance(error, RequestFailed):
                    self._account(error.response)
                if isinstance(failure, RateLimited):
                    self.budget.pause(failure.until, str(failure))
                if failure.status == 401 and attempt == 1:
                    log.warning("GitHub refused the installation token; asking for a new one", extra={"what": what})
                    with self._lock:
                        self._installation = None
                    continue
                raise failure from None
            self._account(response)
            return response
        raise AssertionError("unreachable")

    def _account(self, response: Response[Any]) -> None:
        self.budget.charge(response.status_code)
        self.budget.observe(response.headers)

    def conditional(self, key: str, what: str,
                    request: Callable[[GitHub[AppInstallationAuthStrategy], dict[str, str]], Response[T]]) -> T:
        """A GET with If-None-Match: GitHub's 304 (free of its rate limit) gives the answer kept from last time.

        A 404 is remembered: the same read is not asked again for a poll interval, then twice that, … (a
        deleted repository costs a request a day, not one a pass); meanwhile it raises NotFound at once.
        """
        missing = self._missing.get(key)
        if missing is not None and time.time() < missing.until:
            raise NotFound(what)
        cached = self.etags.get(key)
        headers = {"If-None-Match": cached.etag} if cached else {}
        try:
            response = self.call(what, lambda client: request(client, headers), token=True)
        except NotFound:
            times = missing.times + 1 if missing else 1
            wait = backoff(times, initial=self.settings.github_poll_interval_seconds, maximum=MISSING_MAX_SECONDS,
                           jitter=0.0)
            with self._lock:
                self._missing[key] = Missing(time.time() + wait, times)
            raise
        if missing is not None:
            with self._lock:
                self._missing.pop(key, None)
        if response.status_code == 304 and cached is not None:
            self.etags.count(unchanged=True)
            return cached.data
        data = response.parsed_data
        self.etags.count(unchanged=False)
        etag = response.headers.get("ETag")
        if etag:
            self.etags.put(key, etag, data)
        return data

    def immutable(self, key: str, what: str,
                  request: Callable[[GitHub[AppInstallationAuthStrategy]], Response[T]]) -> T:
        """A read whose answer never changes (a file at a commit id): asked once, kept, its 404 too."""
        with self._lock:
            found = self._immutable.get(key)
        if found is None:
            try:
                found = self.call(what, request, token=True).parsed_data
            except NotFound:
                found = ABSENT
            with self._lock:
                self._immutable[key] = found
                while len(self._immutable) > ETAG_CACHE_ENTRIES:
                    self._immutable.popitem(last=False)
        if found is ABSENT:
            raise NotFound(what)
        return cast(T, found)

    def explain(self, error: GitHubException, what: str) -> GitHubError:
        """githubkit's exception as a GitHubError; a 401 names the settings to look at."""
        failure = describe_failure(error, what)
        if failure.status == 401:
            return GitHubError(f"{what}: GitHub refused the App's credentials (401): check LESSONBOT_GITHUB_APP_ID "
                               "and the private key", retryable=True, status=401)
        return failure


_shared: dict[tuple[str, int | None, str | None], GitHubApp] = {}
_shared_lock = threading.Lock()


def shared_app(settings: Settings) -> GitHubApp:
    """The process's one connection for these settings (its tokens and ETags are shared by every check)."""
    key = (settings.github_api_url, settings.github_app_id, settings.github_org)
    with _shared_lock:
        app = _shared.get(key)
        if app is None:
            app = _shared[key] = GitHubApp(settings)
        return app


def paused_until(settings: Settings) -> float:
    """Until when (epoch seconds) this process asks GitHub nothing; 0 if it may ask now or GitHub is not set up."""
    if not settings.has_github:
        return 0.0
    try:
        until = shared_app(settings).budget.paused_until
    except GitHubError:
        return 0.0
    return until if until > time.time() else 0.0


# What the App needs on the organization (README, GitHub): repositories from templates and
# invitations (administration), reading what students push, reviewing their pull requests.
REQUIRED_PERMISSIONS = {"administration": "write", "contents": "read", "issues": "read", "pull_requests": "write",
                        "actions": "read", "metadata": "read"}
_LEVEL = {"read": 1, "write": 2, "admin": 3}


def describe(settings: Settings) -> tuple[str, bool]:
    """One line about the App, its installation, its permissions and the rate limit left; and whether all is well."""
    github = GitHubApp(settings)
    app = github.as_app()
    try:
        about = app.rest.apps.get_authenticated().parsed_data
    except GitHubException as error:
        raise github.explain(error, f"the App {settings.github_app_id}") from None
    installation_id = github.installation_id()
    installation = app.rest.apps.get_org_installation(github.org).parsed_data
    granted = installation.permissions.model_dump(exclude_none=True, exclude_unset=True)
    missing = [f"{name}:{level}" for name, level in REQUIRED_PERMISSIONS.items()
               if _LEVEL.get(str(granted.get(name, "")), 0) < _LEVEL[level]]
    rate = github.call("the rate limit", lambda client: client.rest.rate_limit.get()).parsed_data.resources.core
    name = about.slug if about is not None else settings.github_app_id
    permissions = ", ".join(f"{key}:{granted[key]}" for key in sorted(granted))
    line = (f"GitHub App {name} (id {settings.github_app_id}) on {github.org}: installation {installation_id}; "
            f"permissions {permissions}; rate limit {rate.remaining}/{rate.limit} left")
    if missing:
        line += f"; MISSING permissions {', '.join(missing)} (grant them in the App's settings, then accept on the org)"
    return line, not missing
