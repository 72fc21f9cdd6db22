"""The browser harness itself: it trusts only the certificates it is given, and a killed run takes it along."""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from tests import lifetime
from tests.browser.chromium import running_browser
from tests.browser.conftest import heading
from tests.stack import leftover_processes, self_signed

HOLD_A_BROWSER = """
import os, sys, time
from pathlib import Path
from tests.browser.chromium import running_browser
from tests.lifetime import write_whole

with running_browser() as browser:
    browser.get("data:text/html,<h1>held</h1>")
    write_whole(Path(sys.argv[1]), {"record": os.environ["LESSONBOT_TEST_RUNS_DIR"]})
    time.sleep(300)
"""


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>hello</title><h1>hello</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_servers(tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """Two HTTPS servers on loopback, each with its own self-signed certificate: (URL, certificate)."""
    started = []
    for name in ("one", "two"):
        directory = tmp_path / name
        directory.mkdir()
        certificate, key = self_signed(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, f"https://127.0.0.1:{server.server_port}/", certificate))
    yield [(url, certificate) for _, url, certificate in started]
    for server, _, _ in started:
        server.shutdown()
        server.server_close()


def test_the_browser_accepts_only_the_certificates_it_was_told_to_trust(https_servers: list[tuple[str, Path]]) -> None:
    (trusted_url, trusted_certificate), (other_url, _) = https_servers
    with running_browser(trusted=[trusted_certificate]) as browser:
        browser.get(trusted_url)
        assert heading(browser) == "hello"
        browser.get(other_url)
        assert "hello" not in browser.title and "not private" in browser.page_source.lower()


def test_a_killed_test_run_leaves_no_chromedriver_or_chromium_running(tmp_path: Path) -> None:
    runs, ready = tmp_path / "runs", tmp_path / "ready.json"
    environment = {**os.environ, "LESSONBOT_TEST_RUNS_DIR": str(runs)}
    holder = lifetime.popen([sys.executable, "-c", HOLD_A_BROWSER, str(ready)], cwd=PROJECT_ROOT, env=environment)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the browser did not start"
        time.sleep(0.1)
    [browser_root] = Path(json.loads(ready.read_text())["record"]).glob("*/browser-*")
    running = [command for _, command in leftover_processes(browser_root)]
    assert any("chromedriver" in command for command in running) and any("chromium" in command for command in running)

    holder.send_signal(signal.SIGKILL)  # as a CI timeout kills the run: no clean-up of its own
    holder.wait(timeout=10)
    lifetime.this_process_record().forget("process", str(holder.pid))

    deadline = time.monotonic() + 10
    while left := leftover_processes(browser_root):
        assert time.monotonic() < deadline, f"still running after the run was killed: {left}"
        time.sleep(0.05)
    assert [path.name for path in lifetime.sweep_dead(runs)] == [browser_root.parent.name]
    assert not browser_root.exists()  # the next session removes its profile and logs
