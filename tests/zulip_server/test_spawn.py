"""The server in its own process, steered through `/_test/*` by `SpawnedZulipTestServer`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from .faults import Fault
from .spawn import SpawnedZulipTestServer


@pytest.fixture(scope="module")
def spawned() -> Iterator[SpawnedZulipTestServer]:
    """One server process for this module's tests."""
    with SpawnedZulipTestServer(students=3) as server:
        yield server


def test_students_message_the_bot_through_the_spawned_server(spawned: SpawnedZulipTestServer) -> None:
    assert spawned.bot is not None
    student = spawned.students[0]
    before = spawned.messages()

    sent = spawned.client(student).send_message({"type": "private", "to": [spawned.bot.email], "content": "hi"})
    after = spawned.messages(after_id=before[-1]["id"] if before else 0)

    assert sent["result"] == "success"
    assert [(m["sender_id"], m["content"]) for m in after] == [(student.id, "hi")]
    assert after[0]["recipient_ids"] == sorted([student.id, spawned.bot.id])


def test_rate_limit_and_faults_are_steered_remotely(spawned: SpawnedZulipTestServer) -> None:
    student = spawned.students[1]
    url = f"{spawned.url}/api/v1/users/me"
    auth = (student.email, student.api_key)
    spawned.set_rate_limit(1, 30)
    try:
        statuses = [requests.get(url, auth=auth, timeout=5).status_code for _ in range(2)]
    finally:
        spawned.clear_rate_limit()
    spawned.script_faults([503, Fault.drop()], endpoint="GET /users/me")

    first = requests.get(url, auth=auth, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, auth=auth, timeout=5)

    assert statuses == [200, 429]
    assert first.status_code == 503
    assert requests.get(url, auth=auth, timeout=5).status_code == 200


def test_queues_expire_on_request_and_users_can_be_added(spawned: SpawnedZulipTestServer) -> None:
    carol = spawned.add_user("carol@example.com", "Carol")
    client = spawned.client(carol)
    queue_id = client.register(event_types=["message"])["queue_id"]

    assert queue_id in spawned.state()["queues"]
    assert spawned.expire_queues(carol) == 1
    assert client.get_events(queue_id=queue_id, last_event_id=-1)["code"] == "BAD_EVENT_QUEUE_ID"
