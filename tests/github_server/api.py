"""The WSGI application: authentication (App JWT, installation and user tokens), rate limits, ETags, faults.

As api.github.com does: every authenticated answer carries `x-ratelimit-*` headers for the
caller's budget (5 000 requests an hour by default); a GET whose `If-None-Match` names the
current ETag is answered 304 and does not count against the budget; a caller past its
budget gets 403 with `x-ratelimit-remaining: 0`. Injected faults (`Faults`, shared with the
Zulip test server) answer as GitHub would: a status code gets GitHub's error body, a
`rate_limit` fault is a secondary rate limit (403, or 429 if asked) with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from werkzeug.datastructures import Headers
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.zulip_server.faults import Fault, Faults
from tests.zulip_server.httpd import DROP_KEY

from . import views
from .hub import DOCS, ApiError, Hub
from .models import now_iso
from .shapes import Urls
from .views import Caller

log = logging.getLogger(__name__)
CONTROL_PREFIX = "/_test/"
JWT_MAX_LIFETIME = 600  # GitHub refuses an App JWT whose exp is more than 10 minutes ahead
SECONDARY_LIMIT = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                   "If you reach out to GitHub Support for help, please include the request ID.")
FAULT_MESSAGES = {401: "Bad credentials", 403: "Resource not accessible by integration", 404: "Not Found",
                  500: "Server Error", 502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Exchange:
    """One request and its answer, as observers (the contract checker) see them."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    request_body: bytes
    status: int
    response_headers: Headers
    body: bytes
    caller: Caller | None
    fault: Fault | None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int | None  # None: the connection was dropped
    caller: str | None
    conditional: bool  # the request carried If-None-Match
    at: float = 0.0  # when it was answered (epoch seconds)


@dataclass
class RateWindow:
    limit: int
    reset: float
    used: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-reset": str(math.ceil(self.reset)), "x-ratelimit-used": str(self.used),
                "x-ratelimit-resource": "core"}


Observer = Callable[[Exchange], None]


class GitHubApi:
    """The WSGI app serving GitHub's REST API from a `Hub`."""

    def __init__(self, hub: Hub, faults: Faults, urls: Urls) -> None:
        self.hub, self.faults, self.urls = hub, faults, urls
        self.routes = Map([Rule(path, methods=[method], endpoint=view) for path, method, view in views.ROUTES])
        self.rate_limit = 5000
        self.rate_window_seconds = 3600.0
        self._windows: dict[str, RateWindow] = {}
        self.observers: list[Observer] = []
        self.observer_errors: list[BaseException] = []
        self.control: Callable[[Request], Response] | None = None
        self.log: deque[RequestRecord] = deque(maxlen=200_000)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.get_data(cache=True)
        if self.control is not None and request.path.startswith(CONTROL_PREFIX):
            return self.control(request)(environ, start_response)
        faults = self.faults.decide(request.method, request.path)
        final = next((f for f in faults if f.kind != "delay"), None)
        for fault in faults:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        response: Response | None = None
        caller: Caller | None = None
        if final is None or final.after:
            response, caller = self._answer(request)
        if final is not None:
            response = _inject(final)
        self._record(request, response, caller, final)
        if response is None:
            environ[DROP_KEY] = True
            response = Response(b"", 500)
        return response(environ, start_response)

    # -- answering ----------------------------------------------------------------

    def _answer(self, request: Request) -> tuple[Response, Caller | None]:
        try:
            view, path_args = self.routes.bind_to_environ(request.environ).match()
        except NotFound:
            return _error(ApiError(404, "Not Found")), None
        except MethodNotAllowed:
            return _error(ApiError(404, "Not Found")), None
        try:
            caller = self._authenticate(request)
        except ApiError as error:
            return _error(error), None
        if view is views.rate_limit_view:
            return self._rate_limit_answer(caller), caller
        window = self._window(caller)
        if window.remaining == 0:
            response = _error(ApiError(403, f"API rate limit exceeded for {caller.rate_key.replace(':', ' ID ')}."))
        else:
            response = self._run(view, request, caller, dict(path_args))
            if response.status_code != 304:
                with self._lock:
                    window.used += 1
        response.headers.extend(window.headers())
        return response, caller

    def _run(self, view: views.View, request: Request, caller: Caller, path_args: dict[str, Any]) -> Response:
        try:
            body = json.loads(request.get_data()) if request.get_data() else None
        except ValueError:
            return _error(ApiError(400, "Problems parsing JSON"))
        call = views.Call(self.hub, self.urls, caller, request.args.to_dict(), body, path_args)
        try:
            with self.hub.lock:
                status, data = view(call)
        except ApiError as error:
            return _error(error)
        if data is None:
            return Response(b"", status)
        response = _json(data, status)
        response.headers["X-GitHub-Api-Version-Selected"] = request.headers.get("X-GitHub-Api-Version", "2022-11-28")
        if request.method == "GET" and status == 200:
            return _conditional(request, response)
        return response

    def _rate_limit_answer(self, caller: Caller) -> Response:
        """GET /rate_limit: free of charge, as on GitHub."""
        window = self._window(caller)
        rate = {"limit": window.limit, "remaining": window.remaining, "reset": math.ceil(window.reset),
                "used": window.used}
        search = {"limit": 30, "remaining": 30, "reset": math.ceil(time.time() + 60), "used": 0}
        response = _json({"resources": {"core": rate, "search": search}, "rate": rate})
        response.headers.extend(window.headers())
        return response

    def _window(self, caller: Caller) -> RateWindow:
        with self._lock:
            window = self._windows.get(caller.rate_key)
            if window is None or window.reset <= time.time():
                window = self._windows[caller.rate_key] = RateWindow(self.rate_limit,
                                                                     time.time() + self.rate_window_seconds)
            return window

    def set_rate_limit(self, limit: int, window_seconds: float = 3600.0) -> None:
        """A new budget for every caller, starting now."""
        with self._lock:
            self.rate_limit, self.rate_window_seconds = limit, window_seconds
            self._windows.clear()

    def rate_used(self, rate_key: str) -> int:
        with self._lock:
            window = self._windows.get(rate_key)
            return window.used if window else 0

    # -- authentication -------------------------------------------------------------

    def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not credential or scheme.lower() not in ("bearer", "token"):
            raise ApiError(401, "Requires authentication")
        credential = credential.strip()
        if credential.count(".") == 2:
            return self._app_caller(credential)
        with self.hub.lock:
            token = self.hub.tokens.get(credential)
            if token is not None:
                if token.expires_at <= time.time():
                    raise ApiError(401, "Bad credentials")
                return Caller("installation", app=token.installation.app, installation=token.installation,
                              token_expires_at=token.expires_at)
            user = self.hub.user_by_token(credential)
        if user is None:
            raise ApiError(401, "Bad credentials")
        return Caller("user", user=user)

    def _app_caller(self, credential: str) -> Caller:
        try:
            claims = jwt.decode(credential, options={"verify_signature": False})
            app = self.hub.apps.get(int(claims.get("iss", 0)))
        except (jwt.InvalidTokenError, ValueError, TypeError):
            app = None
        if app is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(credential, app.public_key_pem, algorithms=["RS256"], leeway=60,
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the "
                                "future time at which the assertion expires") from None
        except jwt.InvalidTokenError:
            raise ApiError(401, "A JSON web token could not be decoded") from None
        if int(claims["exp"]) - int(claims["iat"]) > JWT_MAX_LIFETIME + 60:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return Caller("app", app=app)

    # -- observers ---------------------------------------------------------------------

    def _record(self, request: Request, response: Response | None, caller: Caller | None, fault: Fault | None) -> None:
        status = response.status_code if response is not None else None
        conditional = "If-None-Match" in request.headers
        with self._lock:
            self.log.append(RequestRecord(request.method, request.path, status,
                                          caller.rate_key if caller else None, conditional, time.time()))
        if response is None or not self.observers:
            return
        exchange = Exchange(request.method, request.path, request.args.to_dict(), request.headers,
                            request.get_data(), response.status_code, response.headers, response.get_data(),
                            caller, fault)
        for observer in list(self.observers):
            try:
                observer(exchange)
            except Exception as error:  # an observer must never break the server
                log.exception("observer failed")
                self.observer_errors.append(error)


def _json(data: Any, status: int = 200) -> Response:
    response = Response(json.dumps(data, ensure_ascii=False), status, content_type="application/json; charset=utf-8")
    response.headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
    response.headers["X-GitHub-Request-Id"] = secrets.token_hex(8).upper()
    return response


def _conditional(request: Request, response: Response) -> Response:
    """ETag on a successful GET; 304 with no body when the client already has this version."""
    etag = 'W/"' + hashlib.sha256(response.get_data()).hexdigest()[:40] + '"'
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
    response.headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
    wanted = [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]
    if etag in wanted or etag.removeprefix("W/") in wanted:
        unchanged = Response(b"", 304)
        unchanged.headers["ETag"] = etag
        unchanged.headers["Cache-Control"] = response.headers["Cache-Control"]
        return unchanged
    return response


def _error(error: ApiError) -> Response:
    body = {"message": error.message, **error.extra, "documentation_url": DOCS, "status": str(error.status)}
    response = _json(body, error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="GitHub"'
    return response


def _inject(fault: Fault) -> Response | None:
    if fault.kind == "drop":
        return None
    if fault.kind == "rate_limit":
        response = _error(ApiError(fault.status if fault.status in (403, 429) else 403, SECONDARY_LIMIT))
        response.headers["Retry-After"] = str(math.ceil(fault.seconds))
        return response
    message = FAULT_MESSAGES.get(fault.status, "Server Error")
    response = _error(ApiError(fault.status, message))
    response.headers["Date"] = now_iso()
    return response


def secondary_limit(retry_after: float, status: int = 403) -> Fault:
    """GitHub's secondary rate limit: 403 (or 429) with Retry-After."""
    return Fault("rate_limit", status=status, seconds=retry_after)
