"""CSRF protection for the forms of the Google and admin pages.

The synchronizer-token pattern, as Flask-WTF does it: a random token lives in the (signed)
session cookie, each form carries it signed with a timestamp (itsdangerous, which Flask ships),
and a POST is accepted only when the two agree. A page on another site can make a browser POST,
but it cannot read the token out of our page.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request, session
from itsdangerous import BadData, URLSafeTimedSerializer

SESSION_KEY = "csrf_token"
FIELD = "csrf_token"
MAX_AGE_SECONDS = 8 * 3600


class CsrfError(Exception):
    """A form came without a valid token; the message is shown to the person."""


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(str(current_app.secret_key), salt="lessonbot-csrf")


def csrf_token() -> str:
    """The token for a form on this page (creates the session's secret on first use)."""
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, str):
        raw = secrets.token_urlsafe(32)
        session[SESSION_KEY] = raw
    return str(_serializer().dumps(raw))


def protect_posts(blueprint: Blueprint, refusal: Callable[[str], Response]) -> None:
    """Check the token of every POST to the blueprint's routes; a bad one gets ``refusal(sentence)``."""

    @blueprint.before_request
    def _csrf_on_every_post() -> Response | None:
        if request.method != "POST":
            return None
        try:
            check_csrf()
        except CsrfError as error:
            return refusal(str(error))
        return None


def check_csrf() -> None:
    """Refuse a POST whose form token is missing, forged, expired or from another session."""
    given = request.form.get(FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(SESSION_KEY)
    try:
        raw = _serializer().loads(given, max_age=MAX_AGE_SECONDS)
    except BadData:
        raw = None
    if not isinstance(expected, str) or not isinstance(raw, str) or not hmac.compare_digest(raw, expected):
        raise CsrfError("This form has expired or did not come from this site, so nothing was done. "
                        "Go back, reload the page and try again.")
