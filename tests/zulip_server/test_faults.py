"""Injected faults as the official client meets them: 5xx, dropped connections, delays."""

from __future__ import annotations

import time

import pytest
import requests

from .faults import Fault, endpoint_matches
from .models import User
from .server import ZulipTestServer

DM = {"type": "private", "to": ["lessonbot-bot@example.com"], "content": "hello"}


def _get_me(zs: ZulipTestServer, user: User) -> requests.Response:
    return requests.get(f"{zs.url}/api/v1/users/me", auth=(user.email, user.api_key), timeout=5)


def test_scripted_5xx_are_retried_by_the_client_until_success(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.faults.script([502, 503], endpoint="POST /messages")
    client = zs.client(alice)

    result = client.send_message(DM)

    assert result["result"] == "success"
    assert len(zs.messages) == 1
    assert [r.status for r in zs.request_log if r.method == "POST"] == [502, 503, 200]
    assert zs.faults.count("error") == 2


def test_without_retries_the_client_reports_an_http_error(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.faults.fail_next(1, status=504, endpoint="POST /messages")

    result = zs.client(alice, retry_on_errors=False).send_message(DM)

    assert result == {"msg": "Unexpected error from the server", "result": "http-error", "status_code": 504}
    assert zs.messages == []


def test_dropped_connection_is_a_connection_error(zs: ZulipTestServer, alice: User) -> None:
    zs.faults.drop_next(1, endpoint="GET /users/me")

    with pytest.raises(requests.ConnectionError):
        _get_me(zs, alice)
    assert _get_me(zs, alice).status_code == 200
    assert [r.status for r in zs.request_log] == [None, 200]


def test_client_retries_after_a_drop_before_the_message_was_stored(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.faults.drop_next(1, endpoint="POST /messages")

    result = zs.client(alice).send_message(DM)

    assert result["result"] == "success"
    assert len(zs.messages) == 1


def test_drop_after_the_message_was_stored_makes_a_retry_send_it_twice(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.faults.drop_next(1, endpoint="POST /messages", after=True)

    result = zs.client(alice).send_message(DM)

    assert result["result"] == "success"
    assert [m.content for m in zs.messages] == ["hello", "hello"]


def test_error_rate_hits_about_that_fraction(zs: ZulipTestServer, alice: User) -> None:
    zs.faults.set_error_rate(0.25, status=503, endpoint="GET /users/me")

    with requests.Session() as session:
        session.auth = (alice.email, alice.api_key)
        statuses = [session.get(f"{zs.url}/api/v1/users/me", timeout=5).status_code for _ in range(200)]

    assert set(statuses) == {200, 503}
    assert 25 <= statuses.count(503) <= 75


def test_delay_slows_only_the_chosen_endpoint(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.faults.set_delay(0.4, endpoint="GET /users/me")
    client = zs.client(alice)

    started = time.monotonic()
    client.get_profile()
    slow = time.monotonic() - started
    started = time.monotonic()
    client.send_message(DM)
    fast = time.monotonic() - started

    assert slow >= 0.4
    assert fast < 0.3


def test_clear_removes_every_fault(zs: ZulipTestServer, alice: User) -> None:
    zs.faults.set_error_rate(1.0)
    zs.faults.clear()

    assert _get_me(zs, alice).status_code == 200


def test_script_mixes_kinds_and_passes(zs: ZulipTestServer, alice: User) -> None:
    zs.faults.script([500, None, Fault.drop(), "ok"], endpoint="/users/me")

    outcomes = []
    for _ in range(5):
        try:
            outcomes.append(_get_me(zs, alice).status_code)
        except requests.ConnectionError:
            outcomes.append(0)

    assert outcomes == [500, 200, 0, 200, 200]


@pytest.mark.parametrize(
    ("endpoint", "method", "path", "expected"),
    [
        (None, "GET", "/api/v1/users/me", True),
        ("POST /messages", "POST", "/api/v1/messages", True),
        ("POST /messages", "GET", "/api/v1/messages", False),
        ("/messages/*/reactions", "DELETE", "/api/v1/messages/7/reactions", True),
        ("/messages", "POST", "/api/v1/messages/7/reactions", False),
    ],
)
def test_endpoint_patterns(endpoint: str | None, method: str, path: str, expected: bool) -> None:
    assert endpoint_matches(endpoint, method, path) is expected
