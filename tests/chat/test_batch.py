"""POST /internal/messages/batch: one long-poll's messages in one transaction, each exactly once, in order per sender."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.chat.models import InboundMessage
from app.chat.service import MAX_BATCH
from app.db import db
from tests.helpers import INTERNAL_HEADERS, poisoned_inbound, replies_to

_ids = itertools.count(1)


def _message(email: str, content: str, sender_id: int, message_id: str | None = None) -> dict[str, Any]:
    return {"message_id": message_id or f"zulip:{next(_ids)}", "sender_email": email, "sender_full_name": "S",
            "sender_id": sender_id, "content": content}


def _post(client: FlaskClient, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.post("/internal/messages/batch", json={"messages": messages},
                       headers=kwargs.pop("headers", INTERNAL_HEADERS), **kwargs)


def _statuses(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [result["status"] for result in response.get_json()["results"]]


@pytest.fixture
def poisoned(app: Flask) -> Iterator[None]:
    with poisoned_inbound():
        yield


def test_a_batch_from_several_students_is_answered_in_order(client: FlaskClient) -> None:
    batch = [_message("ann@example.com", "help", 1), _message("bob@example.com", "lessons", 2),
             _message("ann@example.com", "lang ru", 1), _message("ann@example.com", "help", 1)]
    response = _post(client, batch)
    assert _statuses(response) == ["accepted"] * 4
    assert [r["message_id"] for r in response.get_json()["results"]] == [m["message_id"] for m in batch]
    ann = replies_to("ann@example.com")
    assert len(ann) == 3 and "Commands:" in ann[0] and "Commands:" not in ann[2]  # the language changed in between
    assert replies_to("bob@example.com")[0].startswith("Lessons")


def test_a_repeated_batch_or_message_has_no_second_effect(client: FlaskClient) -> None:
    batch = [_message("ann@example.com", "help", 1), _message("ann@example.com", "status", 1)]
    assert _statuses(_post(client, batch)) == ["accepted", "accepted"]
    assert _statuses(_post(client, [*batch, batch[0]])) == ["duplicate"] * 3  # a lost response, the batch sent again
    assert len(replies_to("ann@example.com")) == 2


def test_a_message_that_breaks_rolls_back_alone_and_holds_back_its_senders_later_ones(client: FlaskClient,
                                                                                       poisoned: None) -> None:
    batch = [_message("ann@example.com", "help", 1), _message("pia@example.com", "☠", 3),
             _message("ann@example.com", "lessons", 1), _message("pia@example.com", "help", 3)]
    response = _post(client, batch)
    assert _statuses(response) == ["accepted", "failed", "accepted", "deferred"]
    assert "poisoned message" in response.get_json()["results"][1]["reason"]
    assert len(replies_to("ann@example.com")) == 2 and replies_to("pia@example.com") == []
    stored = set(db.session.scalars(sa.select(InboundMessage.message_id)))
    assert stored == {batch[0]["message_id"], batch[2]["message_id"]}  # pia's later message was not taken either
    assert _statuses(_post(client, [batch[3]])) == ["accepted"]  # handed over again, on its own, in order


def test_two_batches_naming_the_same_students_in_opposite_orders_never_deadlock(app: Flask) -> None:
    """Each thread sends batches from the same four students, in its own order, at the same time."""
    people = [(f"p{n}@example.com", 10 + n) for n in range(4)]
    failures: list[str] = []

    def send(order: list[tuple[str, int]]) -> None:
        with app.app_context():
            client = app.test_client()
            for _ in range(15):
                response = _post(client, [_message(email, "status", user_id) for email, user_id in order])
                if response.status_code != 200 or set(_statuses(response)) != {"accepted"}:
                    failures.append(str(response.get_json()))

    threads = [threading.Thread(target=send, args=(order,)) for order in (people, people[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert all(len(replies_to(email)) == 30 for email, _ in people)


@pytest.mark.parametrize(("body", "status"), [
    ({"messages": []}, 400),
    ({"messages": [_message("a@example.com", "help", 1)] * (MAX_BATCH + 1)}, 400),
    ({"messages": [_message("a@example.com", "help", 1)], "extra": 1}, 400),
    ({"messages": [{**_message("a@example.com", "help", 1), "sender_id": True}]}, 400),
    ({"messages": "help"}, 400),
])
def test_a_bad_batch_is_a_400_that_says_what_is_wrong_and_stores_nothing(client: FlaskClient, body: dict[str, Any],
                                                                         status: int) -> None:
    response = client.post("/internal/messages/batch", json=body, headers=INTERNAL_HEADERS)
    assert response.status_code == status and response.get_json()["message"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 0


def test_the_batch_endpoint_wants_the_token_and_loopback(client: FlaskClient) -> None:
    batch = [_message("a@example.com", "help", 1)]
    assert _post(client, batch, headers={}).status_code == 401
    assert _post(client, batch, environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 403
