"""Event queues: register, long-poll, heartbeat, expiry, with the official client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import zulip

from .listener import MessageListener
from .models import User
from .server import ZulipTestServer


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for long-polls; joined at the end of the test."""
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _register(client: zulip.Client, **kwargs: Any) -> str:
    result = client.register(**kwargs)
    assert result["result"] == "success", result
    return str(result["queue_id"])


def test_register_answers_the_current_api_fields(zs: ZulipTestServer, bot: User) -> None:
    result = zs.client(bot).register(event_types=["message"], fetch_event_types=["message", "realm_user", "subscription"])

    assert result["last_event_id"] == -1
    assert result["event_queue_longpoll_timeout_seconds"] == 90
    assert result["zulip_feature_level"] >= 1
    assert result["max_message_id"] == -1
    assert {u["email"] for u in result["realm_users"]} == {bot.email}
    assert result["subscriptions"] == []


def test_long_poll_blocks_until_a_message_arrives(zs: ZulipTestServer, alice: User, bot: User, pool: ThreadPoolExecutor) -> None:
    client = zs.client(bot)
    queue_id = _register(client, event_types=["message"])
    started = time.monotonic()
    polling = pool.submit(client.get_events, queue_id=queue_id, last_event_id=-1)
    time.sleep(0.3)
    assert not polling.done()

    zs.client(alice).send_message({"type": "private", "to": [bot.email], "content": "hi @**Lessonbot**"})
    result = polling.result(timeout=5)

    assert time.monotonic() - started < 1.5
    [event] = result["events"]
    assert event["type"] == "message"
    assert event["message"]["content"] == "hi @**Lessonbot**"
    assert event["flags"] == ["mentioned"]


def test_heartbeat_answers_an_idle_long_poll(zs: ZulipTestServer, bot: User) -> None:
    zs.set_heartbeat(0.3)
    client = zs.client(bot)
    queue_id = _register(client, event_types=["message"])

    started = time.monotonic()
    first = client.get_events(queue_id=queue_id, last_event_id=-1)
    second = client.get_events(queue_id=queue_id, last_event_id=first["events"][-1]["id"])

    assert 0.5 < time.monotonic() - started < 2
    assert [e["type"] for e in first["events"] + second["events"]] == ["heartbeat", "heartbeat"]
    assert second["events"][0]["id"] > first["events"][0]["id"]


def test_unacknowledged_events_are_sent_again(zs: ZulipTestServer, alice: User, bot: User) -> None:
    client = zs.client(bot)
    queue_id = _register(client, event_types=["message"])
    zs.send_direct(alice, [bot], "one")

    first = client.get_events(queue_id=queue_id, last_event_id=-1, dont_block=True)
    again = client.get_events(queue_id=queue_id, last_event_id=-1, dont_block=True)
    zs.send_direct(alice, [bot], "two")
    acked = client.get_events(queue_id=queue_id, last_event_id=first["events"][0]["id"])

    assert first["events"] == again["events"]
    assert [e["message"]["content"] for e in acked["events"]] == ["two"]


def test_idle_queue_expires_with_bad_event_queue_id(zs: ZulipTestServer, bot: User) -> None:
    zs.set_queue_timeout(0.3)
    queue_id = _register(zs.client(bot), event_types=["message"])
    time.sleep(0.5)

    response = requests.get(
        f"{zs.url}/api/v1/events", auth=(bot.email, bot.api_key), params={"queue_id": queue_id, "last_event_id": "-1"}, timeout=5
    )

    assert response.status_code == 400
    assert response.json() == {
        "result": "error",
        "code": "BAD_EVENT_QUEUE_ID",
        "msg": f"Bad event queue ID: {queue_id}",
        "queue_id": queue_id,
    }
    assert zs.queue_ids() == []


def test_a_polled_queue_does_not_expire(zs: ZulipTestServer, bot: User) -> None:
    zs.set_queue_timeout(0.4)
    zs.set_heartbeat(0.3)
    client = zs.client(bot)
    queue_id = _register(client, event_types=["message"])

    last = -1
    for _ in range(3):
        events = client.get_events(queue_id=queue_id, last_event_id=last)["events"]
        last = events[-1]["id"]

    assert zs.queue_ids() == [queue_id]


def test_deleted_queue_answers_bad_event_queue_id(zs: ZulipTestServer, bot: User) -> None:
    client = zs.client(bot)
    queue_id = _register(client, event_types=["message"])

    deleted = client.deregister(queue_id)
    result = client.get_events(queue_id=queue_id, last_event_id=-1)

    assert deleted["result"] == "success"
    assert result["code"] == "BAD_EVENT_QUEUE_ID"


def test_forced_expiry_wakes_the_poller_and_the_client_registers_again(zs: ZulipTestServer, alice: User, bot: User) -> None:
    with MessageListener(zs, bot) as listener:
        first_queue = zs.queue_ids(bot)
        zs.send_direct(alice, [bot], "before")
        listener.wait_for_count(1)

        assert zs.expire_queues() == 1
        zs.wait_for(lambda: zs.queue_ids(bot) and zs.queue_ids(bot) != first_queue)
        zs.send_direct(alice, [bot], "after")
        received = listener.wait_for_count(2)

    assert [m["content"] for m in received] == ["before", "after"]


def test_queue_gets_only_its_users_messages_and_narrow(zs: ZulipTestServer, alice: User, bob: User, bot: User) -> None:
    zs.add_stream("general", subscribers=[alice, bob])
    zs.add_stream("lessons", subscribers=[alice, bob, bot])
    client = zs.client(bot)
    everything = _register(client, event_types=["message"])
    lessons_only = _register(client, event_types=["message"], narrow=[["stream", "lessons"]])
    public = _register(client, event_types=["message"], all_public_streams=True)

    zs.send_direct(alice, [bob], "not for the bot")
    zs.send_stream(alice, "general", "t", "general chat")
    zs.send_stream(alice, "lessons", "t", "lesson talk")
    zs.send_direct(bob, [bot], "for the bot")

    def contents(queue_id: str) -> list[str]:
        events = client.get_events(queue_id=queue_id, last_event_id=-1, dont_block=True)
        return [e["message"]["content"] for e in events["events"]]

    assert contents(everything) == ["lesson talk", "for the bot"]
    assert contents(lessons_only) == ["lesson talk"]
    assert contents(public) == ["general chat", "lesson talk", "for the bot"]


def test_reaction_and_subscription_events(zs: ZulipTestServer, alice: User, bot: User) -> None:
    client = zs.client(bot)
    queue_id = _register(client, event_types=["reaction", "subscription"])
    message = zs.send_direct(alice, [bot], "react to me")

    client.add_reaction({"message_id": message.id, "emoji_name": "tada"})
    client.add_subscriptions([{"name": "news"}])
    events = client.get_events(queue_id=queue_id, last_event_id=-1, dont_block=True)["events"]

    assert [(e["type"], e["op"]) for e in events] == [("reaction", "add"), ("subscription", "add")]
    assert events[0]["emoji_name"] == "tada" and events[0]["message_id"] == message.id


def test_stop_wakes_a_blocked_long_poll(bot: User, zs: ZulipTestServer) -> None:
    client = zs.client(bot, retry_on_errors=False)
    queue_id = _register(client, event_types=["message"])
    outcome: list[Any] = []
    poller = threading.Thread(target=lambda: outcome.append(client.get_events(queue_id=queue_id, last_event_id=-1)))
    poller.start()
    time.sleep(0.2)

    zs.expire_queues()
    poller.join(timeout=5)

    assert not poller.is_alive()
    assert outcome[0]["code"] == "BAD_EVENT_QUEUE_ID"
