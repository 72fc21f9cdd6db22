"""Per-user rate limits: X-RateLimit-* headers, 429 RATE_LIMIT_HIT with retry-after."""

from __future__ import annotations

import time

import requests

from .models import User
from .server import ZulipTestServer


def _get_me(zs: ZulipTestServer, user: User) -> requests.Response:
    return requests.get(f"{zs.url}/api/v1/users/me", auth=(user.email, user.api_key), timeout=5)


def test_every_counted_answer_carries_the_rate_limit_headers(zs: ZulipTestServer, alice: User) -> None:
    zs.set_rate_limit(3, 60)

    answers = [_get_me(zs, alice) for _ in range(3)]

    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
    reset = int(answers[-1].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61


def test_over_the_limit_answers_429_with_retry_after(zs: ZulipTestServer, alice: User) -> None:
    zs.set_rate_limit(2, 30)
    _get_me(zs, alice)
    _get_me(zs, alice)

    answer = _get_me(zs, alice)

    assert answer.status_code == 429
    body = answer.json()
    assert (body["result"], body["code"]) == ("error", "RATE_LIMIT_HIT")
    assert body["msg"] == "API usage exceeded rate limit"
    assert 29 < body["retry-after"] <= 30
    assert 29 < float(answer.headers["Retry-After"]) <= 30
    assert answer.headers["X-RateLimit-Remaining"] == "0"


def test_the_zulip_client_hands_the_429_to_its_caller(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.set_rate_limit(1, 30)
    client = zs.client(alice)
    first = client.send_message({"type": "private", "to": [bot.id], "content": "one"})

    second = client.send_message({"type": "private", "to": [bot.id], "content": "two"})

    # zulip 0.9.1 neither retries nor sleeps on 429: the caller must back off.
    assert first["result"] == "success"
    assert second["code"] == "RATE_LIMIT_HIT"
    assert second["retry-after"] > 0
    assert [m.content for m in zs.messages] == ["one"]


def test_the_window_slides_and_requests_pass_again(zs: ZulipTestServer, alice: User) -> None:
    zs.set_rate_limit(2, 0.5)
    _get_me(zs, alice)
    _get_me(zs, alice)
    refused = _get_me(zs, alice)

    time.sleep(refused.json()["retry-after"] + 0.05)

    assert refused.status_code == 429
    assert _get_me(zs, alice).status_code == 200


def test_the_limit_is_per_user(zs: ZulipTestServer, alice: User, bob: User) -> None:
    zs.set_rate_limit(1, 30)
    _get_me(zs, alice)

    assert _get_me(zs, alice).status_code == 429
    assert _get_me(zs, bob).status_code == 200


def test_long_polls_are_counted_in_a_window_of_their_own(zs: ZulipTestServer, bot: User) -> None:
    """As Zulip's Tornado counts GET /events in memory, apart from the Django requests' window."""
    zs.set_rate_limit(2, 30)
    client = zs.client(bot)
    queue_id = client.register(event_types=["message"])["queue_id"]  # 1 of the 2 in the main window

    polls = [client.get_events(queue_id=queue_id, last_event_id=-1, dont_block=True) for _ in range(3)]

    assert [p["result"] for p in polls] == ["success", "success", "error"]
    assert polls[2]["code"] == "RATE_LIMIT_HIT"
    me = _get_me(zs, bot)
    assert me.status_code == 200 and me.headers["X-RateLimit-Remaining"] == "0"
    assert _get_me(zs, bot).status_code == 429
