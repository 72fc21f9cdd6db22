"""Google sign-in pages: the OAuth callback, students' one-time link URLs, admin sign-in (the admin pages are app.admin)."""

from __future__ import annotations

import time
from functools import wraps
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, session, url_for

from app import current
from app.db import db
from app.google import signin
from app.google.csrf import csrf_token, protect_posts

bp = Blueprint("google", __name__, template_folder="templates")
STARTED = "oauth_states"  # sign-ins this browser started: only they may finish in it
STARTED_KEPT = 5



def _page(title: str, message: str, status: int = 200, **extra: Any) -> Response:
    return Response(render_template("google/message.html", title=title, message=message, **extra), status=status)


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


protect_posts(bp, lambda sentence: _page("Form refused", sentence, 400))


def _remember_started(oauth_state: str) -> None:
    started = [s for s in session.get(STARTED, []) if isinstance(s, str)][-(STARTED_KEPT - 1):]
    session[STARTED] = [*started, oauth_state]


def _started_here() -> list[str]:
    return [s for s in session.get(STARTED, []) if isinstance(s, str)]


@bp.get("/google/callback")
def callback() -> Any:
    """Where Google sends the browser back after sign-in, for every purpose."""
    oauth_state = request.args.get("state", "")
    try:
        done = signin.finish(current.settings(), oauth_state, request.args.get("code"), request.args.get("error"),
                             browser_states=_started_here())
    except signin.SignInError as error:
        db.session.commit()  # the request stays used
        return _page("Sign-in failed", str(error), 400)
    db.session.commit()
    if done.purpose == "admin":
        session.clear()  # a fresh session: nothing from before the sign-in carries over
        session.permanent = True  # the cookie ends with the admin lifetime (PERMANENT_SESSION_LIFETIME)
        session.update(admin_email=done.email, admin_version=done.session_version, admin_signed_in_at=time.time())
        return redirect(url_for("admin.overview"))
    session[STARTED] = [s for s in _started_here() if s != oauth_state]
    if done.purpose == "service":
        return _page("Lessonbot is authorized", f"Lessonbot now acts as {done.email}. You can close this page.")
    return _page("Google account linked", f"{done.email} is linked. Go back to the chat.")


@bp.get("/google/link/<state>")
def student_link(state: str) -> Any:
    """A student's one-time URL from chat: a page naming the chat account; nothing happens until its form is sent."""
    try:
        link = signin.link_to_confirm(state)
    except signin.SignInError as error:
        return _page("Link unavailable", f"{error} Write “link” to the bot again.", 410)
    return render_template("google/link_confirm.html", title="Link your Google account", link=link)


@bp.post("/google/link/<state>")
def student_link_confirm(state: str) -> Any:
    """The confirmed link: on to Google's sign-in, which may finish only in this browser."""
    try:
        link = signin.link_to_confirm(state)
        url = signin.authorization_url(current.settings(), signin.pending_request(link.state, "link"))
    except signin.SignInError as error:
        return _page("Link unavailable", f"{error} Write “link” to the bot again.", 410)
    _remember_started(link.state)
    return redirect(url)


@bp.get("/admin/login")
def admin_login() -> Any:
    try:
        oauth_request = signin.begin_admin_sign_in(current.settings(), request.remote_addr)
        url = signin.authorization_url(current.settings(), oauth_request, request.args.get("login_hint"))
    except signin.TooManySignIns as error:
        db.session.rollback()
        page = _page("Too many sign-ins", str(error), 429)
        page.headers["Retry-After"] = str(error.retry_after)
        return page
    except signin.SignInError as error:
        db.session.rollback()
        return _page("Sign-in unavailable", str(error), 503)
    db.session.commit()
    _remember_started(oauth_request.state)
    return redirect(url)


@bp.get("/admin/logout")
def admin_logout_page() -> Any:
    """A link to sign out lands here: signing out is a POST, so another site cannot do it for you."""
    return render_template("google/sign_out.html", title="Sign out")


@bp.post("/admin/logout")
def admin_logout() -> Any:
    """Sign out everywhere: the admin's session version moves on, so every copy of the cookie stops working."""
    signin.sign_out_admin(session.get("admin_email"))
    db.session.commit()
    session.clear()
    return _page("Signed out", "You are signed out of Lessonbot.", next_url=url_for("google.admin_login"),
                 next_label="Sign in again")


def admin_required(view: Any) -> Any:
    """Only for a signed-in admin whose sign-in is still good; anyone else goes to the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not signin.admin_session_valid(current.settings(), session.get("admin_email"), session.get("admin_version"),
                                          session.get("admin_signed_in_at")):
            session.clear()
            return redirect(url_for("google.admin_login"))
        return view(*args, **kwargs)

    return wrapper

