"""Admin sessions: a short-lived HTTPS-only cookie that dies at sign-out; sign-in requests pruned and rate-bounded."""

from __future__ import annotations

import time
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import db, utcnow
from app.google.models import OAuthRequest
from app.google.signin import add_admin, begin, prune_requests
from app.settings import Settings
from tests.google.conftest import GoogleWorld, csrf_from, sign_in

BOSS = "boss@example.com"


def _signed_in_admin(app: Flask, world: GoogleWorld, address: str = "192.0.2.10") -> tuple[FlaskClient, Any]:
    add_admin(BOSS)
    db.session.commit()
    world.gs.auto_approve_as(BOSS)
    browser = app.test_client()
    landed = sign_in(browser, browser.get("/admin/login", environ_base={"REMOTE_ADDR": address}).headers["Location"])
    assert landed.headers["Location"] == "/admin/", landed.text
    return browser, landed


def _copy_cookie(app: Flask, source: FlaskClient) -> FlaskClient:
    """A second browser holding a copy of the first one's session cookie (as a thief would)."""
    cookie = source.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def test_the_session_cookie_is_secure_httponly_samesite_lax_and_short_lived(app: Flask, world: GoogleWorld,
                                                                          settings: Settings) -> None:
    _, landed = _signed_in_admin(app, world)
    [cookie] = [value for value in landed.headers.getlist("Set-Cookie") if value.startswith("session=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    expires = parsedate_to_datetime(attributes["expires"].split("=", 1)[1])
    lifetime = timedelta(hours=settings.admin_session_hours)
    assert abs((expires - utcnow()) - lifetime) < timedelta(minutes=1)
    assert lifetime <= timedelta(hours=8)


def test_a_copied_cookie_stops_working_when_the_admin_signs_out(app: Flask, world: GoogleWorld) -> None:
    browser, _ = _signed_in_admin(app, world)
    thief = _copy_cookie(app, browser)
    assert thief.get("/admin/grades").status_code == 200

    assert "Sign out" in browser.get("/admin/logout").text  # a GET only shows the button
    assert thief.get("/admin/grades").status_code == 200
    page = browser.get("/admin/grades")
    signed_out = browser.post("/admin/logout", data={"csrf_token": csrf_from(page.text)})
    assert signed_out.status_code == 200 and "signed out" in signed_out.text
    assert browser.get("/admin/grades").headers["Location"] == "/admin/login"
    assert thief.get("/admin/grades").headers["Location"] == "/admin/login"


def test_sign_out_without_the_form_token_is_refused(app: Flask, world: GoogleWorld) -> None:
    browser, _ = _signed_in_admin(app, world)
    refused = browser.post("/admin/logout", data={})
    assert refused.status_code == 400 and "did not come from this site" in refused.text
    assert browser.get("/admin/grades").status_code == 200


def test_a_session_older_than_the_lifetime_is_refused_even_if_kept_fresh(app: Flask, world: GoogleWorld,
                                                                       settings: Settings) -> None:
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"admin_session_hours": 1.5 / 3600})
    browser, _ = _signed_in_admin(app, world)
    thief = _copy_cookie(app, browser)
    assert browser.get("/admin/grades").status_code == 200  # re-signs the cookie: must not extend the sign-in
    time.sleep(1.6)
    assert browser.get("/admin/grades").headers["Location"] == "/admin/login"
    assert thief.get("/admin/grades").headers["Location"] == "/admin/login"


def test_expired_and_long_used_sign_in_requests_are_pruned_at_each_new_sign_in(app: Flask, world: GoogleWorld,
                                                                              settings: Settings) -> None:
    now = utcnow()
    expired, used_long_ago, used_just_now, pending = (begin(settings, "admin") for _ in range(4))
    expired.expires_at = now - timedelta(seconds=1)
    used_long_ago.used_at = now - timedelta(hours=1)
    used_just_now.used_at = now  # kept a while: a second click still reads "already used"
    kept = {used_just_now.state, pending.state}
    db.session.commit()

    assert app.test_client().get("/admin/login").status_code == 302
    states = set(db.session.scalars(sa.select(OAuthRequest.state)))
    assert kept < states and len(states) == 3  # the two kept and the new one
    used_just_now.used_at = now - timedelta(hours=1)
    pending.expires_at = now - timedelta(seconds=1)
    db.session.commit()
    assert prune_requests() == 2
    db.session.commit()


def test_admin_login_is_rate_bounded_per_address_and_globally(app: Flask, world: GoogleWorld, settings: Settings) -> None:
    app.extensions["lessonbot.settings"] = settings.model_copy(
        update={"admin_login_per_address_per_minute": 3, "admin_login_per_minute": 5})
    browser = app.test_client()

    def login(address: str) -> Any:
        return browser.get("/admin/login", environ_base={"REMOTE_ADDR": address})

    assert [login("198.51.100.1").status_code for _ in range(3)] == [302, 302, 302]
    refused = login("198.51.100.1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert "Too many sign-ins were started from your address" in refused.text
    assert [login("198.51.100.2").status_code for _ in range(2)] == [302, 302]
    everyone = login("198.51.100.3")
    assert everyone.status_code == 429 and "Too many sign-ins were started in the last minute" in everyone.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthRequest)) == 5  # refusals add no rows
