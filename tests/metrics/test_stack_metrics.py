"""/metrics under the deployed web stack: nginx + uWSGI with several processes (tests/stack.py).

uWSGI's processes count into files of their own (prometheus-client's multi-process mode)
and /metrics adds them up; nginx answers /metrics only to 127.0.0.1 over plain HTTP, as
Prometheus on the machine asks for it, and refuses it to everyone else and over HTTPS.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.conftest import SECRETS
from tests.metrics.scrape import samples
from tests.stack import Stack, leftover_processes, running_stack

REQUESTS = 120
OUTSIDER = "127.0.0.2"  # on loopback, but not the address nginx lets in: stands for any other client


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[Stack]:
    with running_stack(database_url, SECRETS, uwsgi={"uwsgi_processes": 4}) as running:
        yield running
    assert leftover_processes(running.root) == []


def request(url: str, path: str, *, source: str = "127.0.0.1", context: ssl.SSLContext | None = None,
            method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=30, source_address=(source, 0), context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def unmatched_requests(stack: Stack) -> float:
    """Requests no route took: only this module asks for such paths (the stack's start-up asks for /health)."""
    status, body = request(stack.http_url, "/metrics")
    assert status == 200, body
    return sum(value for (name, labels), value in samples(body.decode()).items()
               if name == "lessonbot_http_requests_total" and ("endpoint", "unmatched") in labels)


def test_counts_of_every_uwsgi_process_add_up(stack: Stack) -> None:
    before = unmatched_requests(stack)
    context = stack.ssl_context()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda n: request(stack.https_url, f"/no-such-page/{n}", context=context)[0],
                                 range(REQUESTS)))
    assert set(statuses) == {404}
    assert unmatched_requests(stack) - before == REQUESTS
    writers = {path.stem.rsplit("_", 1)[-1] for path in (stack.root / "metrics").glob("counter_*.db")}
    assert len(writers) >= 2, writers  # several processes counted: the sum is across them


def test_metrics_are_refused_to_any_other_client_and_over_https(stack: Stack) -> None:
    context = stack.ssl_context()
    assert request(stack.http_url, "/metrics", source=OUTSIDER)[0] == 403
    assert request(stack.https_url, "/metrics", source=OUTSIDER, context=context)[0] == 403
    assert request(stack.https_url, "/metrics", context=context)[0] == 403  # Prometheus reads plain HTTP on loopback
    assert request(stack.http_url, "/metrics")[0] == 200


def test_the_alert_endpoint_is_refused_to_any_other_client(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {SECRETS['internal_token']}", "Content-Type": "application/json"}
    status, _ = request(stack.http_url, "/internal/alerts", source=OUTSIDER, method="POST", body=b"{}", headers=headers)
    assert status == 403
    status, body = request(stack.http_url, "/internal/alerts", method="POST", body=b"{}", headers=headers)
    assert status == 400 and b"missing fields" in body  # loopback with the token reaches the core
