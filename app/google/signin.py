"""Google's web sign-in flow, for three purposes that share one redirect URI (``/google/callback``).

- ``service``: ``./manage.py google auth`` — the account Lessonbot acts as; its refresh token is stored.
- ``admin``: signing in to the admin pages; the email must be on the allowlist.
- ``link``: a student's one-time URL from chat; their Google identity is linked to their Zulip user.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
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

SIGN_IN_SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
LIFETIME = {"service": timedelta(minutes=30), "admin": timedelta(minutes=10), "link": timedelta(hours=24)}
PURPOSES = tuple(LIFETIME)


class SignInError(Exception):
    """The sign-in cannot finish; the message is shown to the person signing in."""


@dataclass(frozen=True)
class SignedIn:
    purpose: str
    email: str
    student_id: int | None = None


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


def begin(settings: Settings, purpose: str, student_id: int | None = None) -> OAuthRequest:
    """Record a sign-in request (the caller commits); its state is the one-time key."""
    request = OAuthRequest(state=secrets.token_urlsafe(32), purpose=purpose, student_id=student_id,
                           code_verifier=secrets.token_urlsafe(64)[:96], expires_at=utcnow() + LIFETIME[purpose])
    db.session.add(request)
    db.session.flush()
    return request


def authorization_url(settings: Settings, request: OAuthRequest, login_hint: str | None = None) -> str:
    """Google's consent page for a recorded request."""
    flow = _flow(settings, request.purpose, request.code_verifier)
    extra: dict[str, Any] = {"login_hint": login_hint} if login_hint else {}
    if request.purpose == "service":
        extra.update(access_type="offline", prompt="consent", include_granted_scopes="true")
    url, _ = flow.authorization_url(state=request.state, **extra)
    return str(url)


def link_url(settings: Settings, student_id: int) -> str:
    """A student's one-time URL (it leads to Google's sign-in)."""
    request = begin(settings, "link", student_id)
    return f"{settings.public_url.rstrip('/')}/google/link/{request.state}"


def pending_request(state: str, purpose: str | None = None) -> OAuthRequest:
    request = db.session.scalars(sa.select(OAuthRequest).where(OAuthRequest.state == state).with_for_update()).first()
    if request is None or (purpose is not None and request.purpose != purpose):
        raise SignInError("This sign-in link is unknown. Start again.")
    if request.used_at is not None:
        raise SignInError("This sign-in link was already used. Ask for a new one.")
    if request.expires_at < utcnow():
        raise SignInError("This sign-in link has expired. Ask for a new one.")
    return request


def finish(settings: Settings, state: str, code: str | None, error: str | None) -> SignedIn:
    """Exchange the code, learn who signed in and act on the purpose (the caller commits)."""
    request = pending_request(state)
    request.used_at = utcnow()
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
    if request.purpose == "service":
        if not creds.refresh_token:
            raise SignInError("Google returned no refresh token; remove Lessonbot's access in the account and retry.")
        store_authorization(settings, email, list(creds.granted_scopes or creds.scopes or []), creds.refresh_token)
    elif request.purpose == "admin" and not is_admin(email):
        raise SignInError(f"{email} is not an admin of Lessonbot (./manage.py admins add {email}).")
    elif request.purpose == "link" and request.student_id is not None:
        _link_student(request.student_id, email, str(profile.get("id") or profile.get("sub") or "") or None)
    return SignedIn(request.purpose, email, request.student_id)


def _userinfo(settings: Settings, creds: Any) -> dict[str, Any]:
    base = (settings.google_api_endpoint or "https://www.googleapis.com").rstrip("/")
    response = AuthorizedSession(creds).get(f"{base}/oauth2/v2/userinfo", timeout=30)
    if response.status_code != 200:
        raise SignInError(f"Google's userinfo answered {response.status_code}. Start again.")
    return dict(response.json())


def _link_student(student_id: int, email: str, user_id: str | None) -> None:
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
        queue_reply(student, Text("link.done", email=email).render(student.language))


def is_admin(email: str) -> bool:
    return db.session.scalar(sa.select(Admin.id).where(Admin.email == email.strip().lower())) is not None


def add_admin(email: str) -> bool:
    """Allow an email to sign in to the admin pages; False if it already could (the caller commits)."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    if is_admin(email):
        return False
    db.session.add(Admin(email=email))
    return True


def list_admins() -> list[str]:
    return list(db.session.scalars(sa.select(Admin.email).order_by(Admin.email)))
