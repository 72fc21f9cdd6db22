"""Google's web sign-in flow, for three purposes that share one redirect URI (``/google/callback``).

- ``service``: ``./manage.py google auth`` — the account Lessonbot acts as; its refresh token is stored.
- ``admin``: signing in to the admin pages; the email must be on the allowlist.
- ``link``: a student's one-time URL from chat; their Google identity is linked to their Zulip user.

Admin sign-in and linking are bound to the browser that started them (its session holds the
state), so a URL passed to someone else cannot finish in their browser. A link URL opens a
confirmation page naming the chat account first; only its CSRF-protected POST goes on to Google.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.auth.transport.requests import AuthorizedSession
from google_auth_oauthlib.flow import Flow

from app.db import db, utcnow
from app.google.models import Admin, GoogleLink, OAuthRequest
from app.google.tokens import store_authorization
from app.i18n import Text
from app.outbox.service import queue_reply
from app.settings import Settings
from app.students.models import Student

# Google answers with the scopes it granted, which may be spelled differently from what we asked.
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

log = logging.getLogger(__name__)
SIGN_IN_SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
LIFETIME = {"service": timedelta(minutes=30), "admin": timedelta(minutes=10), "link": timedelta(hours=24)}
PURPOSES = tuple(LIFETIME)
BOUND_TO_BROWSER = ("admin", "link")  # `service` is started from the CLI: no browser session to bind to
USED_KEPT = timedelta(minutes=10)  # a used request is kept a while, so a second click reads "already used"
RATE_WINDOW = timedelta(minutes=1)


class SignInError(Exception):
    """The sign-in cannot finish; the message is shown to the person signing in."""


class TooManySignIns(SignInError):
    """Too many admin sign-ins were started in the last minute (from this address or from everyone)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    purpose: str
    email: str
    student_id: int | None = None
    session_version: int = 0


@dataclass(frozen=True)
class LinkToConfirm:
    """What the link confirmation page shows: the chat account the Google account will be linked to."""

    state: str
    chat_email: str
    chat_name: str


def redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + "/google/callback"


def _flow(settings: Settings, purpose: str, code_verifier: str | None = None) -> Flow:
    if not settings.google_client_id or settings.google_client_secret is None:
        raise SignInError("Google sign-in is not configured: set LESSONBOT_GOOGLE_CLIENT_ID and LESSONBOT_GOOGLE_CLIENT_SECRET")
    config = {"web": {"client_id": settings.google_client_id,
                      "client_secret": settings.google_client_secret.get_secret_value(),
                      "auth_uri": settings.google_auth_uri, "token_uri": settings.google_token_uri}}
    scopes = list(settings.google_scopes) if purpose == "service" else SIGN_IN_SCOPES
    return Flow.from_client_config(config, scopes, redirect_uri=redirect_uri(settings), code_verifier=code_verifier)


def prune_requests() -> int:
    """Delete expired sign-in requests and those used a while ago (the caller commits); how many."""
    now = utcnow()
    statement = sa.delete(OAuthRequest).where(sa.or_(OAuthRequest.expires_at < now, OAuthRequest.used_at < now - USED_KEPT))
    return int(db.session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def begin(settings: Settings, purpose: str, student_id: int | None = None, client_address: str | None = None
          ) -> OAuthRequest:
    """Record a sign-in request (the caller commits); its state is the one-time key. Prunes old ones."""
    prune_requests()
    request = OAuthRequest(state=secrets.token_urlsafe(32), purpose=purpose, student_id=student_id,
                           code_verifier=secrets.token_urlsafe(64)[:96], expires_at=utcnow() + LIFETIME[purpose],
                           client_address=(client_address or "")[:64] or None)
    db.session.add(request)
    db.session.flush()
    return request


def begin_admin_sign_in(settings: Settings, client_address: str | None) -> OAuthRequest:
    """An admin sign-in request, within the per-address and global rates (raises TooManySignIns)."""
    since = utcnow() - RATE_WINDOW
    recent = sa.select(sa.func.count()).select_from(OAuthRequest).where(
        OAuthRequest.purpose == "admin", OAuthRequest.created_at >= since)
    if int(db.session.scalar(recent) or 0) >= settings.admin_login_per_minute:
        raise TooManySignIns("Too many sign-ins were started in the last minute. Wait a minute and try again.", 60)
    from_here = recent.where(OAuthRequest.client_address == (client_address or "")[:64])
    if client_address and int(db.session.scalar(from_here) or 0) >= settings.admin_login_per_address_per_minute:
        raise TooManySignIns("Too many sign-ins were started from your address in the last minute. "
                             "Wait a minute and try again.", 60)
    return begin(settings, "admin", client_address=client_address)


def authorization_url(settings: Settings, request: OAuthRequest, login_hint: str | None = None) -> str:
    """Google's consent page for a recorded request."""
    flow = _flow(settings, request.purpose, request.code_verifier)
    extra: dict[str, Any] = {"login_hint": login_hint} if login_hint else {}
    if request.purpose == "service":
        extra.update(access_type="offline", prompt="consent", include_granted_scopes="true")
    url, _ = flow.authorization_url(state=request.state, **extra)
    return str(url)


def link_url(settings: Settings, student_id: int) -> str:
    """A student's one-time URL: a page naming their chat account, whose button leads to Google's sign-in."""
    request = begin(settings, "link", student_id)
    return f"{settings.public_url.rstrip('/')}/google/link/{request.state}"


def link_to_confirm(state: str) -> LinkToConfirm:
    """The chat account a student's link URL would link (raises SignInError for a used or unknown link)."""
    request = pending_request(state, "link")
    student = db.session.get(Student, request.student_id) if request.student_id is not None else None
    if student is None:
        raise SignInError("This sign-in link is unknown. Start again.")
    return LinkToConfirm(state, student.email, student.full_name)


def pending_request(state: str, purpose: str | None = None) -> OAuthRequest:
    request = db.session.scalars(sa.select(OAuthRequest).where(OAuthRequest.state == state).with_for_update()).first()
    if request is None or (purpose is not None and request.purpose != purpose):
        raise SignInError("This sign-in link is unknown. Start again.")
    if request.used_at is not None:
        raise SignInError("This sign-in link was already used. Ask for a new one.")
    if request.expires_at < utcnow():
        raise SignInError("This sign-in link has expired. Ask for a new one.")
    return request


def finish(settings: Settings, state: str, code: str | None, error: str | None,
           browser_states: Collection[str] = ()) -> SignedIn:
    """Exchange the code, learn who signed in and act on the purpose (the caller commits).

    ``browser_states`` are the sign-ins this browser started (from its session): an admin sign-in
    or a link finishes only in the browser that started it, never in one it was passed to.
    """
    request = pending_request(state)
    request.used_at = utcnow()
    if request.purpose in BOUND_TO_BROWSER and state not in browser_states:
        raise SignInError("This sign-in was started in another browser, so it cannot finish here. "
                          "Start again from the beginning in this browser.")
    if error or not code:
        raise SignInError(f"Google sign-in did not complete ({error or 'no code'}).")
    flow = _flow(settings, request.purpose, request.code_verifier)
    try:
        flow.fetch_token(code=code)
    except Exception as failure:
        raise SignInError(f"Google did not accept the sign-in ({failure.__class__.__name__}). Start again.") from failure
    creds = flow.credentials
    profile = _userinfo(settings, creds)
    email = str(profile.get("email", "")).lower()
    if not email:
        raise SignInError("Google did not tell us the account's email address.")
    if not _verified(profile):
        raise SignInError(f"Google has not verified that {email} belongs to this account. Verify the address "
                          "in your Google account, or sign in with another account.")
    log.info("google sign-in (%s) finished", request.purpose)
    return _act(settings, request, creds, email, str(profile.get("id") or profile.get("sub") or "") or None)


def _act(settings: Settings, request: OAuthRequest, creds: Any, email: str, user_id: str | None) -> SignedIn:
    if request.purpose == "service":
        if not creds.refresh_token:
            raise SignInError("Google returned no refresh token; remove Lessonbot's access in the account and retry.")
        store_authorization(settings, email, list(creds.granted_scopes or creds.scopes or []), creds.refresh_token)
        from app.grading.service import GRADE_KINDS, wake_grades

        wake_grades(kinds=GRADE_KINDS)  # grades and rows that waited for the authorization go out at the next poll
    elif request.purpose == "admin":
        admin = db.session.scalars(sa.select(Admin).where(Admin.email == email)).first()
        if admin is None:
            raise SignInError(f"{email} is not an admin of Lessonbot (./manage.py admins add {email}).")
        return SignedIn(request.purpose, email, session_version=admin.session_version)
    elif request.purpose == "link" and request.student_id is not None:
        _link_student(request.student_id, email, user_id)
    return SignedIn(request.purpose, email, request.student_id)


def _verified(profile: dict[str, Any]) -> bool:
    """Google says the address is the account's (v2 userinfo: ``verified_email``; OpenID: ``email_verified``)."""
    return profile.get("verified_email") is True or profile.get("email_verified") in (True, "true")


def _userinfo(settings: Settings, creds: Any) -> dict[str, Any]:
    base = (settings.google_api_endpoint or "https://www.googleapis.com").rstrip("/")
    response = AuthorizedSession(creds).get(f"{base}/oauth2/v2/userinfo", timeout=30)
    if response.status_code != 200:
        raise SignInError(f"Google's userinfo answered {response.status_code}. Start again.")
    return dict(response.json())


def _link_student(student_id: int, email: str, user_id: str | None) -> None:
    """Link (or re-link) the student; a Google account already linked to someone else is refused."""
    same_account = sa.or_(GoogleLink.google_email == email,
                          GoogleLink.google_user_id == user_id if user_id else sa.false())
    taken = db.session.scalar(sa.select(GoogleLink.id).where(GoogleLink.student_id != student_id, same_account))
    if taken is not None:
        raise SignInError("This Google account is already linked to another chat account, so it was not linked. "
                          "If it is yours, ask your teacher.")
    link = db.session.scalars(sa.select(GoogleLink).where(GoogleLink.student_id == student_id)).first()
    if link is None:
        link = GoogleLink(student_id=student_id)
        db.session.add(link)
    link.google_email = email
    link.google_user_id = user_id
    link.linked_at = utcnow()
    from app.grading.service import wake_grades

    wake_grades(student_id)
    student = db.session.get(Student, student_id)
    if student is not None:
        # Never the Google email: whoever sent the link may not be who signed in.
        queue_reply(student, Text("link.done").render(student.language))


def is_admin(email: str) -> bool:
    return db.session.scalar(sa.select(Admin.id).where(Admin.email == email.strip().lower())) is not None


def add_admin(email: str, zulip_user_id: int | None = None) -> bool:
    """Allow an email to sign in to the admin pages (and, given a Zulip user id, that Zulip account to give
    the bot admin commands); False if it was an admin already (the caller commits)."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    admin = db.session.scalars(sa.select(Admin).where(Admin.email == email)).first()
    if zulip_user_id is not None:
        holder = db.session.scalars(sa.select(Admin).where(Admin.zulip_user_id == zulip_user_id)).first()
        if holder is not None and holder.email != email:
            raise ValueError(f"Zulip user {zulip_user_id} is already the chat account of admin {holder.email}")
    if admin is not None:
        if zulip_user_id is not None:
            admin.zulip_user_id = zulip_user_id
        return False
    db.session.add(Admin(email=email, zulip_user_id=zulip_user_id))
    return True


def chat_admin(zulip_user_id: int | None) -> Admin | None:
    """The admin whose Zulip account this is, if any: only they may give the bot admin commands."""
    if zulip_user_id is None:
        return None
    return db.session.scalars(sa.select(Admin).where(Admin.zulip_user_id == zulip_user_id)).first()


def remove_admin(email: str) -> None:
    """Take an email off the allowlist (the caller commits): its open sessions stop working at their next request."""
    email = email.strip().lower()
    removed = db.session.execute(sa.delete(Admin).where(Admin.email == email)).rowcount  # type: ignore[attr-defined]
    if not removed:
        raise SignInError(f"{email} is not an admin (see ./manage.py admins list)")


def admin_session_valid(settings: Settings, email: str | None, version: Any, signed_in_at: Any) -> bool:
    """The session's admin is still allowed, did not sign out since, and signed in less than the lifetime ago."""
    if not email or not isinstance(version, int) or not isinstance(signed_in_at, (int, float)):
        return False
    admin = db.session.scalars(sa.select(Admin).where(Admin.email == email)).first()
    if admin is None or admin.session_version != version:  # removed from the allowlist, or signed out
        return False
    age = utcnow() - datetime.fromtimestamp(signed_in_at, tz=UTC)
    return timedelta(0) <= age < timedelta(hours=settings.admin_session_hours)


def sign_out_admin(email: str | None) -> None:
    """End every session of this admin (the caller commits): their cookies carry the old version."""
    if email:
        db.session.execute(sa.update(Admin).where(Admin.email == email).values(session_version=Admin.session_version + 1))


def list_admins() -> list[Admin]:
    return list(db.session.scalars(sa.select(Admin).order_by(Admin.email)))
