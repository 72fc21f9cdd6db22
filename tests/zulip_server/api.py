"""The WSGI application: routing, authentication, rate limits, faults, observers."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import views
from .events import QueueGone
from .faults import Fault, Faults, RateLimiter, RateLimitResult, endpoint_matches, retry_after_header
from .httpd import DROP_KEY
from .models import User
from .params import Params
from .realm import ApiError, Realm

log = logging.getLogger(__name__)
CONTROL_PREFIX = "/_test/"

ROUTES: list[tuple[str, str, views.View]] = [
    ("/register", "POST", views.register),
    ("/events", "GET", views.get_events),
    ("/events", "DELETE", views.delete_events),
    ("/messages", "GET", views.get_messages),
    ("/messages", "POST", views.send_message),
    ("/messages/flags", "POST", views.update_flags),
    ("/messages/<int:message_id>", "GET", views.get_single_message),
    ("/messages/<int:message_id>/reactions", "POST", views.add_reaction),
    ("/messages/<int:message_id>/reactions", "DELETE", views.remove_reaction),
    ("/users/me", "GET", views.get_own_user),
    ("/users", "GET", views.get_users),
    ("/users/<user_key>", "GET", views.get_user),
    ("/users/<user_key>/subscriptions/<int:stream_id>", "GET", views.get_subscription_status),
    ("/streams", "GET", views.get_streams),
    ("/get_stream_id", "GET", views.get_stream_id),
    ("/users/me/subscriptions", "GET", views.get_subscriptions),
    ("/users/me/subscriptions", "POST", views.add_subscriptions),
    ("/users/me/subscriptions", "DELETE", views.remove_subscriptions),
    ("/bot_storage", "GET", views.get_storage),
    ("/bot_storage", "PUT", views.put_storage),
    ("/typing", "POST", views.set_typing),
]

NGINX_ERROR = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n"
    "<center><h1>{0}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
STATUS_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}


@dataclass
class Exchange:
    """One request and the answer it got, as observers (e.g. contract checks) see it."""

    method: str
    path: str
    query: MultiDict[str, str]
    form: MultiDict[str, str]
    headers: Headers
    status: int
    response_headers: Headers
    body: bytes
    user: User | None
    fault: Fault | None

    def json(self) -> Any:
        """The answer's JSON body."""
        return json.loads(self.body)


@dataclass(frozen=True)
class RequestRecord:
    """A line of the server's request log."""

    method: str
    path: str
    status: int | None  # None: the connection was dropped
    user_id: int | None
    started: float
    duration: float


Observer = Callable[[Exchange], None]


class ZulipApi:
    """The WSGI app serving /api/v1 on top of a `Realm`."""

    def __init__(self, realm: Realm, faults: Faults, info: views.ServerInfo) -> None:
        self.realm, self.faults, self.info = realm, faults, info
        self.routes = Map(
            [Rule("/api/v1" + path, methods=[method], endpoint=view) for path, method, view in ROUTES]
            + [Rule("/api/v1/server_settings", methods=["GET"], endpoint=None)]
        )
        self.rate_limiter: RateLimiter | None = None
        self.apart_rate_limiter: RateLimiter | None = None  # for the endpoints in rate_limit_apart
        self.rate_limit_apart: tuple[str, ...] = ()
        self.observers: list[Observer] = []
        self.control: Callable[[Request], Response] | None = None
        self.observer_errors: list[BaseException] = []
        self.log: deque[RequestRecord] = deque(maxlen=200_000)
        self._log_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.get_data(cache=True)
        if self.control is not None and request.path.startswith(CONTROL_PREFIX):
            return self.control(request)(environ, start_response)
        started = time.monotonic()
        faults = self.faults.decide(request.method, request.path)
        final = next((f for f in faults if f.kind != "delay"), None)
        for fault in faults:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        if final is not None and not final.after:
            response, user = None, None
        else:
            response, user = self._answer(request)
        if final is not None:
            response = self._inject(final)
        self._record(request, response, user, started, final)
        if response is None:
            environ[DROP_KEY] = True  # the HTTP server closes the socket, answering nothing
            response = Response(b"", 500)
        return response(environ, start_response)

    @staticmethod
    def _inject(fault: Fault) -> Response | None:
        if fault.kind == "drop":
            return None
        if fault.kind == "rate_limit":
            response = _error(
                ApiError("API usage exceeded rate limit", "RATE_LIMIT_HIT", 429, **{"retry-after": fault.seconds})
            )
            response.headers["Retry-After"] = retry_after_header(fault.seconds)
            return response
        title = f"{fault.status} {STATUS_TEXT.get(fault.status, 'Error')}"
        return Response(NGINX_ERROR.format(title), fault.status, content_type="text/html")

    def _answer(self, request: Request) -> tuple[Response, User | None]:
        try:
            adapter = self.routes.bind_to_environ(request.environ)
            view, path_args = adapter.match()
        except NotFound:
            return _error(ApiError("Endpoint does not exist", "BAD_REQUEST", 404)), None
        except MethodNotAllowed:
            return _error(ApiError("Method Not Allowed", "BAD_REQUEST", 405)), None
        if view is None:
            # Zulip's rest_dispatch checks HTTP Basic credentials whenever a request carries
            # them, even on endpoints open to anonymous callers: a wrong key is a 401 here too.
            caller = self._authenticate(request) if request.authorization is not None else None
            if request.authorization is not None and caller is None:
                return _unauthorized(request), None
            return _json(views.server_settings(self.info)), caller
        user = self._authenticate(request)
        if user is None:
            return _unauthorized(request), None
        return self._call(view, request, user, dict(path_args)), user

    def _call(self, view: views.View, request: Request, user: User, path_args: dict[str, Any]) -> Response:
        limit = self._rate_limit(request, user)
        if limit is not None and not limit.allowed:
            response = _error(
                ApiError(
                    "API usage exceeded rate limit", "RATE_LIMIT_HIT", 429, **{"retry-after": round(limit.secs_to_freedom, 3)}
                )
            )
            response.headers["Retry-After"] = retry_after_header(limit.secs_to_freedom)
        else:
            params = Params(request.args, request.form)
            call = views.Call(self.realm, self.info, user, params, path_args)
            response = self._run(view, call)
        if limit is not None:
            response.headers.extend(limit.headers())
        return response

    @staticmethod
    def _run(view: views.View, call: views.Call) -> Response:
        # Views run one at a time (they take well under a millisecond), so they
        # read a consistent realm; only the long-poll runs unlocked.
        lock = contextlib.nullcontext() if view is views.get_events else call.realm.lock
        try:
            with lock:
                return _json(view(call))
        except QueueGone as gone:
            queue_id = str(gone)
            return _error(ApiError(f"Bad event queue ID: {queue_id}", "BAD_EVENT_QUEUE_ID", queue_id=queue_id))
        except ApiError as error:
            return _error(error)

    def _rate_limit(self, request: Request, user: User) -> RateLimitResult | None:
        limiter = self.rate_limiter
        if any(endpoint_matches(e, request.method, request.path) for e in self.rate_limit_apart):
            limiter = self.apart_rate_limiter
        return None if limiter is None else limiter.hit(user.id)

    def _authenticate(self, request: Request) -> User | None:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return None
        return self.realm.authenticate(auth.username or "", auth.password or "")

    def _record(
        self, request: Request, response: Response | None, user: User | None, started: float, fault: Fault | None
    ) -> None:
        status = response.status_code if response is not None else None
        record = RequestRecord(
            request.method, request.path, status, user.id if user else None, started, time.monotonic() - started
        )
        with self._log_lock:
            self.log.append(record)
        if response is None or not self.observers:
            return
        exchange = Exchange(
            request.method,
            request.path,
            request.args,
            request.form,
            request.headers,
            response.status_code,
            response.headers,
            response.get_data(),
            user,
            fault,
        )
        for observer in list(self.observers):
            try:
                observer(exchange)
            except Exception as error:  # an observer must never break the server
                log.exception("observer failed")
                self.observer_errors.append(error)


def _json(data: dict[str, Any], status: int = 200) -> Response:
    body = {"result": "success", "msg": "", **data} if status < 400 else data
    return Response(json.dumps(body, ensure_ascii=False), status, content_type="application/json")


def _error(error: ApiError) -> Response:
    body = {"result": "error", "msg": error.msg, "code": error.code, **error.extra}
    return _json(body, error.status)


def _unauthorized(request: Request) -> Response:
    if request.authorization is None:
        error = ApiError("Missing 'Authorization' header.", "UNAUTHORIZED", 401)
    else:
        error = ApiError("Invalid API key", "INVALID_API_KEY", 401)
    response = _error(error)
    response.headers["WWW-Authenticate"] = 'Basic realm="zulip"'
    return response
