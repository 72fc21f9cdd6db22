"""`ZulipTestServer`: a local Zulip REST API for the official clients, on loopback."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from . import control
from .api import Observer, RequestRecord, ZulipApi
from .credentials import Credentials
from .faults import Faults, RateLimiter
from .httpd import ThreadedHTTPServer
from .models import Message, Stream, User
from .realm import Realm
from .views import ServerInfo

LOOPBACK = "127.0.0.1"
# Zulip serves the long-poll from Tornado, whose rate limiter keeps its own counts in memory
# (TornadoInMemoryRateLimiterBackend), apart from Django's: the same rule, a separate window.
DEFAULT_RATE_LIMIT_APART = ("GET /events", "DELETE /events")


class ZulipTestServer(Credentials):
    """A Zulip server for tests and benchmarks; `with ZulipTestServer() as zs: ...`.

    It listens on 127.0.0.1 only (an ephemeral port unless `port` is given) and
    keeps everything in memory. Every method is thread-safe.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        heartbeat_seconds: float = 45.0,
        queue_timeout_seconds: float = 600.0,
        longpoll_timeout_seconds: int = 90,
        realm_name: str = "Lessonbot test realm",
        zulip_version: str = "9.2",
        feature_level: int = 278,
        seed: int | None = 0,
    ) -> None:
        self.realm = Realm(heartbeat_seconds, queue_timeout_seconds)
        self.faults = Faults(seed)
        self._port = port
        self._info_args = (realm_name, zulip_version, feature_level, longpoll_timeout_seconds)
        self._server: ThreadedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.api: ZulipApi | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("server already started")
        placeholder = ServerInfo("", *self._info_args)
        api = ZulipApi(self.realm, self.faults, placeholder)
        self._server = ThreadedHTTPServer(LOOPBACK, self._port, api)
        api.info = ServerInfo(f"http://{LOOPBACK}:{self._server.port}", *self._info_args)
        api.control = functools.partial(control.handle, self)
        self.api = api
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="zulip-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake long-polls and close open connections."""
        if self._server is None:
            return
        self._server.shutdown()
        self.realm.expire_queues()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.port)

    @property
    def url(self) -> str:
        """The site URL to give clients, e.g. `http://127.0.0.1:40123`."""
        return f"http://{LOOPBACK}:{self.port}"

    # -- data -------------------------------------------------------------------

    def add_user(self, email: str, full_name: str, bot: bool = False, api_key: str | None = None) -> User:
        """Create an account; the API key is random unless given."""
        return self.realm.add_user(email, full_name, bot=bot, api_key=api_key)

    def rotate_api_key(self, user: User) -> User:
        """A new API key for the account (the old one is refused with 401 from now on); the user with it."""
        return self.realm.rotate_api_key(user)

    def user(self, key: str | int) -> User:
        """A user by email or id (KeyError if unknown)."""
        user = self.realm.find_user(key)
        if user is None:
            raise KeyError(key)
        return user

    @property
    def users(self) -> list[User]:
        """All accounts, in creation order."""
        with self.realm.lock:
            return list(self.realm.users.values())

    def add_stream(
        self, name: str, *, description: str = "", invite_only: bool = False, subscribers: Iterable[User] = ()
    ) -> Stream:
        """Create a stream (or get the existing one) and subscribe `subscribers`."""
        stream = self.realm.add_stream(name, description=description, invite_only=invite_only)
        for user in subscribers:
            self.realm.subscribe(user, stream)
        return stream

    def subscribe(self, user: User, stream_name: str) -> None:
        """Subscribe a user to a stream (created if missing)."""
        self.realm.subscribe(user, self.realm.add_stream(stream_name))

    def add_emoji(self, name: str, code: str) -> None:
        """Teach the server one more emoji name for reactions."""
        with self.realm.lock:
            self.realm.emoji_codes[name] = code

    @property
    def messages(self) -> list[Message]:
        """A snapshot of every stored message, oldest first."""
        with self.realm.lock:
            return list(self.realm.messages)

    def messages_to(self, user: User) -> list[Message]:
        """Direct messages that `user` received from someone else."""
        return [m for m in self.messages if m.is_private and m.sender.id != user.id and user.id in m.participant_ids()]

    def send_direct(self, sender: User, recipients: Iterable[User], content: str) -> Message:
        """Store and deliver a direct message without going through HTTP."""
        return self.realm.send_private(sender, list(recipients), content)

    def send_stream(self, sender: User, stream: str, topic: str, content: str) -> Message:
        """Store and deliver a stream message without going through HTTP."""
        return self.realm.send_stream(sender, self.realm.add_stream(stream), topic, content)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll `predicate` until it returns something truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s")

    # -- behaviour --------------------------------------------------------------

    def set_rate_limit(self, max_requests: int, per_seconds: float, apart: Iterable[str] = DEFAULT_RATE_LIMIT_APART) -> None:
        """Allow each user `max_requests` per `per_seconds` (sliding window), then 429.

        `apart` names endpoints counted under the same rule in a window of their own (by
        default the event queue's `/events`, served and counted by Zulip's Tornado); every answer
        carries the X-RateLimit-* headers of the window that counted it.
        """
        api = self._require_api()
        api.rate_limit_apart = tuple(apart)
        api.rate_limiter = RateLimiter(max_requests, per_seconds)
        api.apart_rate_limiter = RateLimiter(max_requests, per_seconds)

    def clear_rate_limit(self) -> None:
        """No rate limit (the default)."""
        api = self._require_api()
        api.rate_limiter = api.apart_rate_limiter = None

    def set_heartbeat(self, seconds: float) -> None:
        """How long GET /events blocks before answering a heartbeat."""
        self.realm.heartbeat_seconds = seconds

    def set_queue_timeout(self, seconds: float) -> None:
        """How long an unpolled event queue lives before BAD_EVENT_QUEUE_ID."""
        self.realm.queue_timeout_seconds = seconds

    def expire_queues(self, user: User | None = None) -> int:
        """Expire all event queues (or one user's) now; returns how many."""
        return self.realm.expire_queues(user)

    def queue_ids(self, user: User | None = None) -> list[str]:
        """Ids of the live event queues (of one user)."""
        with self.realm.lock:
            return [q.id for q in self.realm.queues.values() if user is None or q.user_id == user.id]

    def add_observer(self, observer: Observer) -> None:
        """Call `observer(exchange)` after every answered request (e.g. contract checks)."""
        self._require_api().observers.append(observer)

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every request served so far (method, path, status, user, timing)."""
        return list(self._require_api().log)

    def _require_api(self) -> ZulipApi:
        if self.api is None:
            raise RuntimeError("server not started")
        return self.api
