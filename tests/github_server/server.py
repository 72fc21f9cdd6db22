"""`GitHubTestServer`: GitHub's REST API on loopback, for githubkit and the app's GitHub code."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import GitHub

from tests.zulip_server.faults import Faults
from tests.zulip_server.httpd import ThreadedHTTPServer

from . import control
from .api import GitHubApi, Observer, RequestRecord
from .hub import Hub
from .models import Account, App, Installation, Repo
from .shapes import Urls
from .webhooks import Webhooks

LOOPBACK = "127.0.0.1"


def new_private_key() -> bytes:
    """A fresh RSA key in PEM, as GitHub hands an App's private key out."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def public_half(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class GitHubTestServer:
    """`with GitHubTestServer() as gh:` an organization with the App installed, on 127.0.0.1.

    `gh.org`, `gh.app`, `gh.installation` and `gh.private_key_pem` are what the app is
    configured with; `gh.add_student("alice")` makes a user with a token, `gh.client(user)`
    a githubkit client acting as them. Every method is thread-safe.
    """

    def __init__(self, *, port: int = 0, org: str = "lessonbot-course", app_slug: str = "lessonbot",
                 token_lifetime_seconds: float = 3600.0, seed: int | None = 0) -> None:
        self.hub = Hub(token_lifetime_seconds)
        self.faults = Faults(seed)
        self._port = port
        self._server: ThreadedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.api: GitHubApi | None = None
        self.private_key_pem = new_private_key()
        owner = self.hub.add_account("lessonbot-admin", name="Lessonbot Admin")
        self.org: Account = self.hub.add_account(org, "Organization")
        self.app: App = self.hub.add_app(app_slug, owner, public_half(self.private_key_pem))
        self.installation: Installation = self.hub.install(self.app, self.org)
        self.webhooks = Webhooks(self.app.id)
        self.hub.on_event = self._emit

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("server already started")
        api = GitHubApi(self.hub, self.faults, Urls("", ""))
        self._server = ThreadedHTTPServer(LOOPBACK, self._port, api)
        api.urls = Urls(self.url, self.url)
        api.control = functools.partial(control.handle, self)
        self.api = api
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="github-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{LOOPBACK}:{self._server.port}"

    # -- data ---------------------------------------------------------------------------

    def add_student(self, login: str, name: str | None = None) -> Account:
        """A GitHub user with a personal access token (`.token`)."""
        return self.hub.add_account(login, name=name)

    def add_template(self, name: str, files: dict[str, bytes]) -> Repo:
        """A template repository in the organization, its default branch holding `files`."""
        return self.hub.add_repo(self.org, name, files, template=True)

    def repo(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        return self.hub.repo(owner, name)

    def rotate_app_key(self) -> bytes:
        """A new private key for the App; JWTs signed with the old one are refused from now on."""
        self.private_key_pem = new_private_key()
        self.app.public_key_pem = public_half(self.private_key_pem)
        return self.private_key_pem

    def client(self, user: Account) -> GitHub[Any]:
        """githubkit acting as this user (no HTTP cache, no automatic retries: tests see every answer)."""
        return GitHub(user.token, base_url=self.url, http_cache=False, auto_retry=False, timeout=10)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s")

    # -- behaviour -------------------------------------------------------------------------

    def set_webhook(self, url: str | None, secret: str = "") -> None:
        """Deliver the App's events to `url`, signed with `secret` (None: no deliveries)."""
        self.webhooks.configure(url, secret)

    def _emit(self, event: str, action: str | None, repo: Repo, sender: Account, **objects: Any) -> None:
        urls = self._require_api().urls
        self.webhooks.emit(event, urls.webhook(event, action, repo, sender, self.installation, **objects))

    def set_rate_limit(self, limit: int, window_seconds: float = 3600.0) -> None:
        """Each caller's budget from now on (GitHub's: 5 000 an hour for an installation)."""
        self._require_api().set_rate_limit(limit, window_seconds)

    def rate_used(self, rate_key: str | None = None) -> int:
        """Requests counted against a budget (by default the installation's)."""
        return self._require_api().rate_used(rate_key or f"installation:{self.installation.id}")

    def add_observer(self, observer: Observer) -> None:
        self._require_api().observers.append(observer)

    @property
    def request_log(self) -> list[RequestRecord]:
        return list(self._require_api().log)

    def _require_api(self) -> GitHubApi:
        if self.api is None:
            raise RuntimeError("server not started")
        return self.api
