"""OAuth 2.0 and OpenID Connect: projects, clients, accounts, tokens and endpoints.

Endpoints (paths as Google's, relative to the server URL):

* ``POST /token`` (also ``/o/oauth2/token``): ``refresh_token`` and
  ``authorization_code`` grants (PKCE S256/plain), client auth in the body or
  HTTP Basic.
* ``GET /o/oauth2/auth`` (also ``/o/oauth2/v2/auth``): auto-approves as the
  account given by ``login_hint`` or :attr:`OAuthState.consent_account` and
  redirects to ``redirect_uri`` with ``code`` and ``state``.
* ``GET /oauth2/v3/userinfo`` (also ``/v1/userinfo``, ``/oauth2/v2/userinfo``).
* ``POST /revoke`` (also ``/o/oauth2/revoke``): revokes the whole grant.
* ``GET /oauth2/v1/certs`` and ``/oauth2/v3/certs``: keys that verify ``id_token``.

Like Google, the short scopes ``email`` and ``profile`` come back expanded to
``https://www.googleapis.com/auth/userinfo.*`` in token responses.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from google.auth import crypt, jwt

from .common import Identity
from .errors import ApiError, insufficient_scopes, unauthenticated
from .faults import Clock
from .httpd import Request, Response

SCOPE_ALIASES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
ISSUER = "https://accounts.google.com"
KEY_ID = "lessonbot-test-key"
ACCESS_TOKEN_LIFETIME = 3599
CODE_LIFETIME = 600

ENDPOINTS = {
    "/token": "oauth.token",
    "/o/oauth2/token": "oauth.token",
    "/o/oauth2/auth": "oauth.authorize",
    "/o/oauth2/v2/auth": "oauth.authorize",
    "/oauth2/v3/userinfo": "oauth.userinfo",
    "/oauth2/v2/userinfo": "oauth.userinfo",
    "/v1/userinfo": "oauth.userinfo",
    "/revoke": "oauth.revoke",
    "/o/oauth2/revoke": "oauth.revoke",
    "/oauth2/v3/tokeninfo": "oauth.tokeninfo",
    "/oauth2/v1/certs": "oauth.certs",
    "/oauth2/v3/certs": "oauth.certs",
    "/.well-known/openid-configuration": "oauth.openid_configuration",
}


class OAuthError(Exception):
    """An OAuth endpoint error: ``{"error": …, "error_description": …}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def response(self) -> Response:
        """The JSON error response."""
        return Response(self.status, {"error": self.error, "error_description": self.description})


def normalize_scopes(scopes: str | list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Scopes as a set, with ``email``/``profile`` expanded as Google does."""
    items = scopes.split() if isinstance(scopes, str) else scopes
    return frozenset(SCOPE_ALIASES.get(scope, scope) for scope in items)


@dataclass
class OAuthClient:
    """An OAuth client registered in a project."""

    client_id: str
    client_secret: str
    project_id: str
    redirect_uris: tuple[str, ...] | None = None


@dataclass
class Account:
    """A Google account; ``user_id`` doubles as the OpenID ``sub`` and Classroom userId."""

    email: str
    user_id: str
    name: str
    email_verified: bool = True  # Google has confirmed the address belongs to the account


@dataclass
class Grant:
    """A refresh token: one client's authorization by one account."""

    refresh_token: str
    client_id: str
    email: str
    scopes: frozenset[str]
    revoked: bool = False


@dataclass
class AccessToken:
    """An issued access token."""

    token: str
    grant: Grant
    expires_at: float
    scopes: frozenset[str]


@dataclass
class AuthCode:
    """An authorization code waiting to be exchanged."""

    code: str
    client_id: str
    email: str
    scopes: frozenset[str]
    redirect_uri: str
    offline: bool
    expires_at: float
    challenge: str | None = None
    challenge_method: str = "plain"
    nonce: str | None = None


@dataclass
class OAuthState:
    """All OAuth data. Thread-safe; every public method takes the lock."""

    clock: Clock
    signing_key_pem: bytes
    signing_cert_pem: bytes
    lock: threading.RLock = field(default_factory=threading.RLock)
    projects: dict[str, int] = field(default_factory=dict)
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    consent_account: str | None = None
    deny_consent: bool = False
    access_token_lifetime: int = ACCESS_TOKEN_LIFETIME

    # --- control API -------------------------------------------------------------------

    def add_project(self, project_id: str | None = None) -> str:
        """Register a Cloud project; returns its id."""
        with self.lock:
            project_id = project_id or f"project-{len(self.projects) + 1}"
            self.projects.setdefault(project_id, 100_000_000_000 + len(self.projects))
            return project_id

    def add_client(self, project_id: str, redirect_uris: list[str] | None = None) -> OAuthClient:
        """Register an OAuth client in ``project_id`` (created if new)."""
        with self.lock:
            self.add_project(project_id)
            number = len(self.clients) + 1
            client = OAuthClient(
                client_id=f"{number}-{secrets.token_hex(8)}.apps.googleusercontent.com",
                client_secret=f"GOCSPX-{secrets.token_urlsafe(18)}",
                project_id=project_id,
                redirect_uris=tuple(redirect_uris) if redirect_uris is not None else None,
            )
            self.clients[client.client_id] = client
            return client

    def add_account(self, email: str, name: str | None = None, *, email_verified: bool = True) -> Account:
        """Register (or return) the account for ``email``."""
        with self.lock:
            key = email.lower()
            if key not in self.accounts:
                user_id = str(100_000_000_000_000_000_000 + len(self.accounts) + 1)
                self.accounts[key] = Account(email, user_id, name or email.split("@")[0].title(), email_verified)
            return self.accounts[key]

    def account(self, email_or_id: str) -> Account | None:
        """The account with this email or user id."""
        with self.lock:
            found = self.accounts.get(email_or_id.lower())
            return found or next((a for a in self.accounts.values() if a.user_id == email_or_id), None)

    def issue_refresh_token(self, client_id: str, email: str, scopes: list[str] | tuple[str, ...]) -> str:
        """Create a grant as if ``email`` had consented to ``scopes`` for ``client_id``."""
        with self.lock:
            self._client(client_id)
            self.add_account(email)
            grant = Grant(f"1//{secrets.token_urlsafe(32)}", client_id, email, normalize_scopes(scopes))
            self.grants[grant.refresh_token] = grant
            return grant.refresh_token

    def issue_access_token(self, grant: Grant, scopes: frozenset[str] | None = None) -> AccessToken:
        """A fresh access token for ``grant``."""
        with self.lock:
            token = AccessToken(
                token=f"ya29.{secrets.token_urlsafe(32)}",
                grant=grant,
                expires_at=self.clock.now() + self.access_token_lifetime,
                scopes=scopes or grant.scopes,
            )
            self.tokens[token.token] = token
            return token

    def revoke(self, token: str) -> bool:
        """Revoke the grant behind a refresh or access token; False if unknown."""
        with self.lock:
            grant = self.grants.get(token) or getattr(self.tokens.get(token), "grant", None)
            if grant is None:
                return False
            grant.revoked = True
            for access in [t for t in self.tokens.values() if t.grant is grant]:
                del self.tokens[access.token]
            return True

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired (the next call gets a 401)."""
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = self.clock.now() - 1

    def authenticate(self, request: Request, api: str) -> Identity:
        """The identity behind the request's bearer token, or a 401 ApiError."""
        header = request.header("authorization") or ""
        query = urllib.parse.parse_qs(request.raw_query)
        token = header[7:].strip() if header.lower().startswith("bearer ") else (query.get("access_token") or [""])[0]
        with self.lock:
            access = self.tokens.get(token)
            if access is None or access.expires_at <= self.clock.now() or access.grant.revoked:
                raise unauthenticated(api)
            client = self.clients[access.grant.client_id]
            account = self.add_account(access.grant.email)
            return Identity(account.email, account.user_id, client.client_id, client.project_id, access.scopes)

    @staticmethod
    def require_scopes(identity: Identity, accepted: list[str], api: str) -> None:
        """403 unless the token holds one of the method's ``accepted`` scopes."""
        if accepted and not identity.scopes.intersection(accepted):
            raise insufficient_scopes(api)

    def _client(self, client_id: str) -> OAuthClient:
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        return client

    # --- HTTP endpoints ----------------------------------------------------------------

    def handle(self, call_id: str, request: Request) -> Response:
        """Serve one OAuth endpoint."""
        handlers = {
            "oauth.token": self._token_endpoint,
            "oauth.authorize": self._authorize_endpoint,
            "oauth.userinfo": self._userinfo_endpoint,
            "oauth.revoke": self._revoke_endpoint,
            "oauth.tokeninfo": self._tokeninfo_endpoint,
            "oauth.certs": self._certs_endpoint,
            "oauth.openid_configuration": self._openid_configuration,
        }
        try:
            return handlers[call_id](request)
        except OAuthError as error:
            return error.response()

    def _form(self, request: Request) -> dict[str, str]:
        body = request.read_body().decode()
        pairs = urllib.parse.parse_qsl(body, keep_blank_values=True)
        pairs += urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True)
        return dict(pairs)

    def _authenticate_client(self, request: Request, form: dict[str, str]) -> OAuthClient:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        header = request.header("authorization") or ""
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = (urllib.parse.unquote_plus(p) for p in decoded.partition(":"))
        client = self._client(client_id)
        if secret is not None and secret != client.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")
        if secret is None:
            raise OAuthError(400, "invalid_request", "client_secret is missing.")
        return client

    def _token_endpoint(self, request: Request) -> Response:
        if request.method != "POST":
            raise OAuthError(405, "invalid_request", "Token requests must use POST.")
        form = self._form(request)
        with self.lock:
            client = self._authenticate_client(request, form)
            grant_type = form.get("grant_type")
            if grant_type == "refresh_token":
                return Response(200, self._refresh_grant(client, form))
            if grant_type == "authorization_code":
                return Response(200, self._code_grant(client, form))
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _refresh_grant(self, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
        grant = self.grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked or grant.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = grant.scopes
        if form.get("scope"):
            scopes = normalize_scopes(form["scope"])
            if not scopes <= grant.scopes:
                raise OAuthError(400, "invalid_scope", "Some requested scopes were invalid.")
        return self._token_response(grant, scopes, nonce=None)

    def _code_grant(self, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
        code = self.codes.pop(form.get("code", ""), None)
        if code is None or code.client_id != client.client_id or code.expires_at < self.clock.now():
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        _check_pkce(code, form.get("code_verifier"))
        grant = Grant(f"1//{secrets.token_urlsafe(32)}", client.client_id, code.email, code.scopes)
        self.grants[grant.refresh_token] = grant
        body = self._token_response(grant, code.scopes, nonce=code.nonce)
        if code.offline:
            body["refresh_token"] = grant.refresh_token
        return body

    def _token_response(self, grant: Grant, scopes: frozenset[str], nonce: str | None) -> dict[str, Any]:
        access = self.issue_access_token(grant, scopes)
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }
        if "openid" in scopes:
            body["id_token"] = self._id_token(grant, scopes, nonce)
        return body

    def _id_token(self, grant: Grant, scopes: frozenset[str], nonce: str | None) -> str:
        account = self.add_account(grant.email)
        now = int(self.clock.now())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "azp": grant.client_id,
            "aud": grant.client_id,
            "sub": account.user_id,
            "iat": now,
            "exp": now + 3600,
        }
        if SCOPE_ALIASES["email"] in scopes:
            claims.update(email=account.email, email_verified=account.email_verified)
        if SCOPE_ALIASES["profile"] in scopes:
            claims["name"] = account.name
        if nonce:
            claims["nonce"] = nonce
        make_signer: Any = crypt.RSASigner.from_string  # google-auth is untyped
        encode: Any = jwt.encode
        token: bytes = encode(make_signer(self.signing_key_pem, key_id=KEY_ID), claims)
        return token.decode()

    def _authorize_endpoint(self, request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True))
        with self.lock:
            client = self.clients.get(params.get("client_id", ""))
            if client is None:
                return _html(401, "Error 401: invalid_client. The OAuth client was not found.")
            redirect_uri = params.get("redirect_uri", "")
            if not redirect_uri or (client.redirect_uris is not None and redirect_uri not in client.redirect_uris):
                return _html(400, "Error 400: redirect_uri_mismatch")
            if params.get("response_type") != "code":
                return _redirect(redirect_uri, {"error": "unsupported_response_type", "state": params.get("state")})
            if self.deny_consent:
                return _redirect(redirect_uri, {"error": "access_denied", "state": params.get("state")})
            email = self._consenting_account(params.get("login_hint"))
            if email is None:
                return _html(200, "Choose an account (no test account configured for auto-approval)")
            return _redirect(redirect_uri, self._new_code(client, email, redirect_uri, params))

    def _consenting_account(self, login_hint: str | None) -> str | None:
        if login_hint and login_hint.lower() in self.accounts:
            return login_hint
        return self.consent_account

    def _new_code(self, client: OAuthClient, email: str, redirect_uri: str, params: dict[str, str]) -> dict[str, Any]:
        scopes = normalize_scopes(params.get("scope", ""))
        code = AuthCode(
            code=f"4/{secrets.token_urlsafe(24)}",
            client_id=client.client_id,
            email=self.add_account(email).email,
            scopes=scopes,
            redirect_uri=redirect_uri,
            offline=params.get("access_type") == "offline",
            expires_at=self.clock.now() + CODE_LIFETIME,
            challenge=params.get("code_challenge"),
            challenge_method=params.get("code_challenge_method", "plain"),
            nonce=params.get("nonce"),
        )
        self.codes[code.code] = code
        return {"state": params.get("state"), "code": code.code, "scope": " ".join(sorted(scopes)), "authuser": "0"}

    def _userinfo_endpoint(self, request: Request) -> Response:
        try:
            identity = self.authenticate(request, "oauth")
        except ApiError as error:
            return Response(401, {"error": "invalid_request", "error_description": error.message})
        account = self.add_account(identity.email)
        body: dict[str, Any] = {"sub": account.user_id, "name": account.name}
        if SCOPE_ALIASES["email"] in identity.scopes:
            body.update(email=account.email, email_verified=account.email_verified)
        if request.raw_path == "/oauth2/v2/userinfo":
            body = {"id": account.user_id, "email": account.email, "verified_email": account.email_verified,
                    "name": account.name}
        return Response(200, body)

    def _tokeninfo_endpoint(self, request: Request) -> Response:
        token = self._form(request).get("access_token", "")
        with self.lock:
            access = self.tokens.get(token)
            if access is None or access.expires_at <= self.clock.now() or access.grant.revoked:
                raise OAuthError(400, "invalid_token", "Invalid Value")
            account = self.add_account(access.grant.email)
            return Response(
                200,
                {
                    "azp": access.grant.client_id,
                    "aud": access.grant.client_id,
                    "sub": account.user_id,
                    "scope": " ".join(sorted(access.scopes)),
                    "exp": str(int(access.expires_at)),
                    "expires_in": str(int(access.expires_at - self.clock.now())),
                    "email": account.email,
                    "email_verified": "true",
                    "access_type": "offline",
                },
            )

    def _revoke_endpoint(self, request: Request) -> Response:
        token = self._form(request).get("token", "")
        if not self.revoke(token):
            raise OAuthError(400, "invalid_token", "Token expired or revoked")
        return Response(200, {})

    def _certs_endpoint(self, request: Request) -> Response:
        if request.raw_path.endswith("/v1/certs"):
            return Response(200, {KEY_ID: self.signing_cert_pem.decode()})
        return Response(200, {"keys": [_jwk(self.signing_cert_pem)]})

    def _openid_configuration(self, request: Request) -> Response:
        base = request.base_url
        return Response(
            200,
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/v1/userinfo",
                "revocation_endpoint": f"{base}/revoke",
                "jwks_uri": f"{base}/oauth2/v3/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "code_challenge_methods_supported": ["plain", "S256"],
            },
        )


def _check_pkce(code: AuthCode, verifier: str | None) -> None:
    if code.challenge is None:
        return
    if verifier is None:
        raise OAuthError(400, "invalid_grant", "Missing code verifier.")
    expected = verifier
    if code.challenge_method == "S256":
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    if expected != code.challenge:
        raise OAuthError(400, "invalid_grant", "Invalid code verifier.")


def _redirect(uri: str, params: dict[str, Any]) -> Response:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if "?" in uri else "?"
    return Response(302, headers={"Location": f"{uri}{separator}{query}"}, raw=b"", content_type="text/html")


def _html(status: int, text: str) -> Response:
    page = f"<!doctype html><title>Google test server</title><p>{text}</p>".encode()
    return Response(status, raw=page, content_type="text/html; charset=utf-8")


def _jwk(cert_pem: bytes) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    numbers = public_key.public_numbers()

    def encode(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KEY_ID, "n": encode(numbers.n), "e": encode(numbers.e)}
