"""Google API clients built from the stored authorization, and what their errors mean for us."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import Any

import httplib2
import requests
from google.auth.exceptions import RefreshError, TransportError
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from app.google.tokens import authorized_at, load_authorization
from app.settings import Settings

# httplib2 silently sends a request again when the connection drops, even a PATCH that Google
# may already have applied. We retry ourselves, after reading what Google has (exactly once).
httplib2.RETRIES = 1
log = logging.getLogger(__name__)

VERSIONS = {"classroom": "v1", "drive": "v3", "sheets": "v4", "oauth2": "v2"}
AUTHORIZE = "run `./manage.py google auth` to authorize Lessonbot"
REAUTHORIZE = f"{AUTHORIZE} again"
NOT_CONFIGURED = ("Google is not configured: set LESSONBOT_GOOGLE_CLIENT_ID and LESSONBOT_GOOGLE_CLIENT_SECRET (the Web "
                  "OAuth client, see README), then run `./manage.py google auth`")


class GoogleError(Exception):
    """A Google call failed; ``transient`` says whether trying later may help."""

    def __init__(self, message: str, *, transient: bool = False, retry_after: float | None = None,
                 ambiguous: bool = False, reason: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.ambiguous = ambiguous  # the call may have reached Google
        self.reason = reason


class NotAuthorized(GoogleError):
    """No usable stored authorization: the admin must run `google auth`."""


def credentials(settings: Settings) -> Credentials:
    """Refresh-token credentials of the account Lessonbot acts as.

    A missing Web client is named before a missing authorization (`google auth` needs the
    client first); the stored authorization is read before either, so that an unreachable
    database is reported as such.
    """
    stored = load_authorization(settings)
    if not settings.google_client_id or settings.google_client_secret is None:
        raise NotAuthorized(NOT_CONFIGURED)
    if stored is None:
        if authorized_at() is not None:  # stored, but it no longer decrypts: the secret key changed
            raise NotAuthorized(f"the stored Google authorization cannot be read (LESSONBOT_SECRET_KEY changed?): "
                                f"{REAUTHORIZE}")
        raise NotAuthorized(f"Lessonbot has no Google authorization yet: {AUTHORIZE}")
    return Credentials(None, refresh_token=stored.refresh_token, client_id=settings.google_client_id,
                       client_secret=settings.google_client_secret.get_secret_value(),
                       token_uri=settings.google_token_uri, scopes=list(stored.scopes))


def client_options(settings: Settings) -> dict[str, str]:
    return {"api_endpoint": settings.google_api_endpoint} if settings.google_api_endpoint else {}


_cache: dict[tuple[str, str, str], Any] = {}


def service(settings: Settings, api: str) -> Any:
    """A discovery-based client (cached per token, so the access token is reused between calls)."""
    creds = credentials(settings)
    key = (api, creds.refresh_token or "", settings.google_api_endpoint or "")
    if key not in _cache:
        if len(_cache) > 16:  # tokens change rarely; keep the cache small anyway
            _cache.clear()
        _cache[key] = build(api, VERSIONS[api], credentials=creds, client_options=client_options(settings),
                            static_discovery=True, cache_discovery=False)
    return _cache[key]


@dataclass(frozen=True)
class ErrorInfo:
    status: int
    reason: str
    message: str


def error_info(error: HttpError) -> ErrorInfo:
    """Google's status, first reason and message from an HttpError."""
    status = int(error.resp.status)
    try:
        body = json.loads(error.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ErrorInfo(status, "", str(error))
    details = body.get("errors") or [{}]
    reason = str(details[0].get("reason") or body.get("status") or "")
    return ErrorInfo(status, reason, str(body.get("message", "")))


def _retry_after(error: HttpError) -> float | None:
    value = error.resp.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(error: Exception, what: str) -> GoogleError:
    """Turn a client-library error into a GoogleError with an actionable message."""
    if isinstance(error, GoogleError):
        return error
    if isinstance(error, RefreshError):
        if "invalid_grant" in str(error):
            return NotAuthorized(f"Google authorization was revoked or has expired: {REAUTHORIZE}")
        return GoogleError(f"{what}: could not refresh the Google token ({error})", transient=True)
    if isinstance(error, HttpError):
        info = error_info(error)
        rate_limited = info.reason in ("rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_EXHAUSTED")
        if info.status == 429 or info.status >= 500 or (info.status == 403 and rate_limited):
            return GoogleError(f"{what}: Google answered {info.status} {info.reason or info.message}; will retry",
                               transient=True, retry_after=_retry_after(error), ambiguous=info.status >= 500,
                               reason=info.reason, status=info.status)
        if info.status == 401:
            return NotAuthorized(f"{what}: Google refused the stored authorization: {REAUTHORIZE}")
        return GoogleError(f"{what}: Google answered {info.status}: {info.message}", reason=info.reason, status=info.status)
    if isinstance(error, (OSError, socket.timeout, httplib2.HttpLib2Error, TransportError, requests.RequestException)):
        return GoogleError(f"{what}: connection to Google failed ({error.__class__.__name__}); will retry",
                           transient=True, ambiguous=True)
    raise error


def call(request: Any, what: str) -> Any:
    """Execute one API request (no library retries: callers reschedule) and classify its failure.

    Writes go through requests, which never re-sends them: httplib2 repeats a request whose
    connection dropped before the answer, and Google may already have applied it.
    """
    log.debug("google call: %s (%s %s)", what, request.method, request.uri)
    try:
        if request.method == "GET":
            return request.execute(num_retries=0)
        return _write_once(request)
    except Exception as error:
        raise classify(error, what) from error


def _write_once(request: Any) -> Any:
    session = AuthorizedSession(request.http.credentials)
    response = session.request(request.method, request.uri, data=request.body, headers=request.headers, timeout=60)
    if response.status_code >= 300:
        headers = {key.lower(): value for key, value in response.headers.items()}
        raise HttpError(httplib2.Response({**headers, "status": response.status_code}), response.content, uri=request.uri)
    return response.json() if response.content else {}


@dataclass(frozen=True)
class Status:
    email: str
    scopes: tuple[str, ...]
    authorized_at: str | None
    refreshes: bool
    problem: str | None
    transient: bool = False  # the refresh failed on the way (network, Google's 5xx), not on the authorization


def google_status(settings: Settings) -> Status | None:
    """The stored authorization and whether its token refreshes now; None if there is none."""
    stored = load_authorization(settings)
    if stored is None:
        return None
    try:
        credentials(settings).refresh(Request())
    except Exception as error:
        problem = classify(error, "refreshing the token")
        return Status(stored.email, stored.scopes, authorized_at(), False, str(problem), problem.transient)
    return Status(stored.email, stored.scopes, authorized_at(), True, None)
