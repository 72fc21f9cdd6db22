"""The Zulip client reads the proxy and CA settings from the environment once, when it is built, not per request."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from app.zulip.api import ZulipApi, ZulipError
from app.zulip.budget import LocalBudget
from tests.zulip.conftest import NO_LIMIT
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


class _RecordingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that only writes down the request line it was asked for, and answers 502."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.request_lines: list[str] = []


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _RecordingProxy)
        self.server.request_lines.append(self.rfile.readline().decode().strip())
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def proxy() -> Iterator[_RecordingProxy]:
    server = _RecordingProxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _api(zs: ZulipTestServer, bot: User) -> ZulipApi:
    return ZulipApi(zs.url, bot.email, lambda: bot.api_key, LocalBudget(NO_LIMIT))


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_named_in_the_environment_is_used(zs: ZulipTestServer, bot: User, proxy: _RecordingProxy,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    with pytest.raises(ZulipError):
        _api(zs, bot).call("users/me", "GET", timeout=5)
    assert proxy.request_lines and proxy.request_lines[0].startswith(f"GET {zs.url}/api/v1/server_settings ")


def test_no_proxy_is_honoured_and_the_environment_is_not_read_again_per_request(
        zs: ZulipTestServer, bot: User, proxy: _RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    api = _api(zs, bot)
    assert api.call("users/me", "GET", timeout=5)["email"] == bot.email
    monkeypatch.delenv("NO_PROXY")  # read when the client was built, not on each call
    assert api.call("users/me", "GET", timeout=5)["email"] == bot.email
    assert proxy.request_lines == []
    session = api.client().session
    assert session is not None and session.trust_env is False


def test_a_ca_bundle_named_in_the_environment_is_the_one_verified_against(
        zs: ZulipTestServer, bot: User, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = _api(zs, bot).client().session
    assert session is not None and session.verify == "/etc/ssl/certs/ca-certificates.crt"
