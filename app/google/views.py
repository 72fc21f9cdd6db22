"""Google sign-in pages: the OAuth callback, students' one-time link URLs, admin sign-in and the grades page."""

from __future__ import annotations

from functools import wraps
from html import escape
from typing import Any

from flask import Blueprint, Response, redirect, request, session

from app import state
from app.db import db
from app.google import signin
from app.grading.service import list_grades
from app.settings import Settings

bp = Blueprint("google", __name__)


def _settings() -> Settings:
    settings = state.settings()
    return settings


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · Lessonbot</title></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return Response(html, status=status, mimetype="text/html")


@bp.get("/google/callback")
def callback() -> Any:
    """Where Google sends the browser back after sign-in, for every purpose."""
    try:
        done = signin.finish(_settings(), request.args.get("state", ""), request.args.get("code"), request.args.get("error"))
    except signin.SignInError as error:
        db.session.commit()  # the request stays used
        return _page("Sign-in failed", f"<p>{escape(str(error))}</p>", 400)
    db.session.commit()
    if done.purpose == "admin":
        session.clear()
        session["admin_email"] = done.email
        return redirect("/admin/grades")
    if done.purpose == "service":
        return _page("Lessonbot is authorized", f"<p>Lessonbot now acts as {escape(done.email)}. You can close this page.</p>")
    return _page("Google account linked", f"<p>{escape(done.email)} is linked. Go back to the chat.</p>")


@bp.get("/google/link/<state>")
def student_link(state: str) -> Any:
    """A student's one-time URL from chat: on to Google's sign-in."""
    try:
        oauth_request = signin.pending_request(state, "link")
        return redirect(signin.authorization_url(_settings(), oauth_request))
    except signin.SignInError as error:
        return _page("Link unavailable", f"<p>{escape(str(error))} Write <code>link</code> to the bot again.</p>", 410)


@bp.get("/admin/login")
def admin_login() -> Any:
    try:
        oauth_request = signin.begin(_settings(), "admin")
        url = signin.authorization_url(_settings(), oauth_request, request.args.get("login_hint"))
    except signin.SignInError as error:
        return _page("Sign-in unavailable", f"<p>{escape(str(error))}</p>", 503)
    db.session.commit()
    return redirect(url)


@bp.get("/admin/logout")
def admin_logout() -> Any:
    session.clear()
    return redirect("/admin/login")


def admin_required(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        email = session.get("admin_email")
        if not email or not signin.is_admin(email):  # removed from the allowlist: out at once
            return redirect("/admin/login")
        return view(*args, **kwargs)

    return wrapper


@bp.get("/admin/grades")
@admin_required
def admin_grades() -> Any:
    """Every grade and gradebook row, with the reason of any that could not be written."""
    rows = "".join(
        f"<tr><td>{item.id}</td><td>{escape(item.kind.value)}</td><td>{escape(str(item.payload.get('lesson_id', '')))}</td>"
        f"<td>{escape(str(item.payload.get('points', '')))}</td><td>{escape(item.status.value)}</td>"
        f"<td>{item.attempts}</td><td>{escape(item.last_error or '')}</td></tr>"
        for item in list_grades(limit=500)
    )
    table = ("<table border='1' cellpadding='4'><tr><th>id</th><th>kind</th><th>lesson</th><th>points</th><th>status</th>"
             f"<th>attempts</th><th>reason</th></tr>{rows}</table>")
    who = escape(str(session.get("admin_email")))
    return _page("Grades", f"<p>Signed in as {who} · <a href='/admin/logout'>sign out</a></p>{table}")
