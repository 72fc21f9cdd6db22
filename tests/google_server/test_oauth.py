"""OAuth 2.0 / OpenID endpoints, driven by google-auth and google-auth-oauthlib."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.oauth2 import id_token
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.errors import HttpError

from .checks import error_body
from .conftest import ALL_SCOPES, CLASSROOM_SCOPES, TEACHER
from .server import GoogleTestServer

REDIRECT_URI = "https://lessonbot.example/oauth/callback"
SIGN_IN_SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email"]


def _transport() -> google.auth.transport.requests.Request:
    return google.auth.transport.requests.Request()


def _flow(gs: GoogleTestServer, client_id: str, scopes: list[str]) -> Flow:
    config = gs.client_config(client_id, [REDIRECT_URI])
    config["web"]["auth_uri"] = gs.https_url + "/o/oauth2/auth"
    config["web"]["token_uri"] = gs.https_url + "/token"  # oauthlib insists on https
    return Flow.from_client_config(config, scopes=scopes, redirect_uri=REDIRECT_URI)


def _consent(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=10)


def test_refresh_grant_issues_expiring_access_token(gs: GoogleTestServer, credentials: Credentials) -> None:
    credentials.refresh(_transport())

    assert credentials.token and credentials.token.startswith("ya29.")
    assert credentials.expiry is not None and not credentials.expired
    assert gs.call_count("oauth.token") == 1


def test_revoked_refresh_token_fails_with_invalid_grant(gs: GoogleTestServer, credentials: Credentials) -> None:
    gs.revoke(credentials.refresh_token)

    with pytest.raises(RefreshError) as caught:
        credentials.refresh(_transport())

    assert "invalid_grant" in str(caught.value)
    assert "Token has been expired or revoked." in str(caught.value)


def test_wrong_client_secret_is_invalid_client(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    token = gs.issue_refresh_token(app_client[0], TEACHER, CLASSROOM_SCOPES)
    credentials = Credentials(None, refresh_token=token, client_id=app_client[0], client_secret="nope", token_uri=gs.token_uri)

    with pytest.raises(RefreshError, match="invalid_client"):
        credentials.refresh(_transport())


def test_expired_access_token_gets_401_and_client_refreshes(gs: GoogleTestServer, classroom: Any) -> None:
    gs.add_course("Git")
    classroom.courses().list().execute()
    gs.expire_access_tokens()

    assert classroom.courses().list().execute()["courses"][0]["name"] == "Git"
    assert gs.call_count("oauth.token") == 2
    assert [r.status for r in gs.requests if r.call_id == "classroom.courses.list"] == [200, 401, 200]


def test_clock_advance_expires_tokens(gs: GoogleTestServer, credentials: Credentials) -> None:
    credentials.refresh(_transport())
    token = credentials.token
    gs.clock.advance(3600)

    response = requests.get(gs.url + "/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    assert response.status_code == 401


def test_missing_scope_is_403_insufficient_scopes(gs: GoogleTestServer, make_credentials: Callable[..., Credentials]) -> None:
    drive_only = make_credentials(scopes=["https://www.googleapis.com/auth/drive"])
    classroom = gs.build("classroom", drive_only)

    with pytest.raises(HttpError) as caught:
        classroom.courses().list().execute()

    assert caught.value.resp.status == 403
    assert error_body(caught.value)["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_web_flow_auto_approves_and_exchanges_code(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.auto_approve_as("admin@example.com")
    flow = _flow(gs, app_client[0], SIGN_IN_SCOPES + CLASSROOM_SCOPES)
    url, state = flow.authorization_url(access_type="offline", prompt="consent")

    consent = _consent(url)
    assert consent.status_code == 302
    callback = consent.headers["Location"]
    assert callback.startswith(REDIRECT_URI) and f"state={state}" in callback

    flow.fetch_token(authorization_response=callback)
    creds = flow.credentials
    assert creds.refresh_token and creds.token
    assert set(creds.granted_scopes or []) == set(SIGN_IN_SCOPES + CLASSROOM_SCOPES)


def test_online_access_gets_no_refresh_token(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.auto_approve_as("admin@example.com")
    flow = _flow(gs, app_client[0], SIGN_IN_SCOPES)
    url, _ = flow.authorization_url(access_type="online")  # the library defaults to offline

    flow.fetch_token(authorization_response=_consent(url).headers["Location"])

    assert flow.credentials.refresh_token is None


def test_code_can_be_used_once_and_pkce_is_checked(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.auto_approve_as("admin@example.com")
    flow = _flow(gs, app_client[0], SIGN_IN_SCOPES)
    url, _ = flow.authorization_url()
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(_consent(url).headers["Location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": app_client[0],
        "client_secret": app_client[1],
        "code_verifier": "wrong" * 10,
    }

    bad_verifier = requests.post(gs.token_uri, data=form, timeout=10)
    reused = requests.post(gs.token_uri, data={**form, "code_verifier": flow.code_verifier}, timeout=10)

    assert bad_verifier.status_code == 400 and bad_verifier.json()["error"] == "invalid_grant"
    assert reused.status_code == 400  # the failed attempt consumed the code


def test_login_hint_selects_account_and_userinfo_names_it(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.add_account("student@example.com", "Ann Lee")
    flow = _flow(gs, app_client[0], SIGN_IN_SCOPES)
    url, _ = flow.authorization_url(login_hint="student@example.com")
    flow.fetch_token(authorization_response=_consent(url).headers["Location"])

    info = flow.authorized_session().get(gs.https_url + "/oauth2/v3/userinfo", timeout=10).json()

    assert info["email"] == "student@example.com" and info["email_verified"] is True
    assert info["sub"] == gs.add_account("student@example.com")


def test_id_token_verifies_against_published_certs(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.auto_approve_as("admin@example.com")
    flow = _flow(gs, app_client[0], SIGN_IN_SCOPES)
    url, _ = flow.authorization_url(nonce="n-123")
    flow.fetch_token(authorization_response=_consent(url).headers["Location"])

    claims = id_token.verify_token(
        flow.credentials.id_token, _transport(), audience=app_client[0], certs_url=gs.url + "/oauth2/v1/certs"
    )

    assert claims["email"] == "admin@example.com" and claims["nonce"] == "n-123"
    assert claims["iss"] == "https://accounts.google.com"


def test_denied_consent_redirects_with_access_denied(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    gs.auto_approve_as("admin@example.com")
    gs.deny_consent()
    url, _ = _flow(gs, app_client[0], SIGN_IN_SCOPES).authorization_url()

    assert "error=access_denied" in _consent(url).headers["Location"]


def test_unregistered_redirect_uri_is_refused(gs: GoogleTestServer, project: str) -> None:
    client_id, _ = gs.add_oauth_client(project, redirect_uris=["https://other.example/cb"])
    gs.auto_approve_as("admin@example.com")
    url, _ = _flow(gs, client_id, SIGN_IN_SCOPES).authorization_url()

    response = _consent(url)

    assert response.status_code == 400 and "redirect_uri_mismatch" in response.text


def test_no_configured_account_shows_chooser_instead_of_redirect(gs: GoogleTestServer, app_client: tuple[str, str]) -> None:
    url, _ = _flow(gs, app_client[0], SIGN_IN_SCOPES).authorization_url()

    assert _consent(url).status_code == 200


def test_revoke_endpoint_revokes_the_grant(gs: GoogleTestServer, credentials: Credentials) -> None:
    credentials.refresh(_transport())

    revoked = requests.post(gs.url + "/revoke", data={"token": credentials.token}, timeout=10)
    again = requests.post(gs.url + "/revoke", data={"token": credentials.token}, timeout=10)

    assert revoked.status_code == 200 and again.status_code == 400
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(_transport())


def test_tokeninfo_reports_scopes_and_email(gs: GoogleTestServer, credentials: Credentials) -> None:
    credentials.refresh(_transport())

    info = requests.get(gs.url + "/oauth2/v3/tokeninfo", params={"access_token": credentials.token}, timeout=10)

    assert info.json()["email"] == TEACHER
    assert set(info.json()["scope"].split()) == set(ALL_SCOPES)
