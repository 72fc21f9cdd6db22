"""POST /internal/messages: token and loopback only, idempotent by message id, clear errors."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.helpers import INTERNAL_HEADERS, post_message, replies_to


def test_same_message_id_twice_gives_one_reply(client: FlaskClient) -> None:
    first = post_message(client, "eve@example.com", "help", message_id="zulip:42")
    second = post_message(client, "eve@example.com", "help", message_id="zulip:42")
    assert first == (200, {"status": "accepted", "message_id": "zulip:42", "replies": 1})
    assert second == (200, {"status": "duplicate", "message_id": "zulip:42"})
    assert len(replies_to("eve@example.com")) == 1


def test_integer_message_ids_are_accepted(client: FlaskClient) -> None:
    response = client.post("/internal/messages", headers=INTERNAL_HEADERS, json={
        "message_id": 1234, "sender_email": "int@example.com", "content": "help"})
    assert response.status_code == 200 and response.get_json()["message_id"] == "1234"


@pytest.mark.parametrize(("headers", "remote", "status", "error"), [
    ({}, "127.0.0.1", 401, "unauthorized"),
    ({"Authorization": "Bearer wrong-token-wrong-token"}, "127.0.0.1", 401, "unauthorized"),
    ({"Authorization": "Basic abc"}, "127.0.0.1", 401, "unauthorized"),
    (INTERNAL_HEADERS, "203.0.113.9", 403, "forbidden"),
    (INTERNAL_HEADERS, "::1", 200, None),
])
def test_internal_endpoint_needs_token_and_loopback(client: FlaskClient, headers: dict[str, str], remote: str,
                                                    status: int, error: str | None) -> None:
    code, body = post_message(client, "mallory@example.com", "help", headers=headers, remote=remote)
    assert code == status
    if error:
        assert body["error"] == error and body["message"]
        assert replies_to("mallory@example.com") == []


@pytest.mark.parametrize(("data", "content_type", "status", "error", "detail"), [
    (b"{not json", "application/json", 400, "invalid_json", "Invalid JSON"),
    (b'{"message_id": "x1", "content": "hi"}', "application/json", 400, "invalid_body", "sender_email: Field required"),
    (b'{"message_id": "", "sender_email": "a@b.c", "content": "hi"}', "application/json", 400, "invalid_body", "message_id"),
    (b'{"message_id": "x2", "sender_email": "no-at-sign", "content": "hi"}', "application/json", 400, "invalid_body",
     "sender_email"),
    (b'[1, 2]', "application/json", 400, "invalid_body", "body"),
    (b"message_id=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
])
def test_malformed_bodies_get_a_json_error_that_says_what_is_wrong(client: FlaskClient, data: bytes, content_type: str,
                                                                   status: int, error: str, detail: str | None) -> None:
    response = client.post("/internal/messages", data=data, content_type=content_type, headers=INTERNAL_HEADERS)
    body = response.get_json()
    assert response.status_code == status
    assert body["error"] == error
    if detail:
        assert any(detail in line for line in body["details"]), body


def test_oversized_body_is_refused_with_413(client: FlaskClient) -> None:
    huge = b'{"message_id": "big", "sender_email": "a@b.c", "content": "' + b"x" * 300_000 + b'"}'
    response = client.post("/internal/messages", data=huge, content_type="application/json", headers=INTERNAL_HEADERS)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert "larger than" in response.get_json()["message"]


def test_unknown_path_and_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/nope").get_json()["error"] == "not_found"
    assert client.get("/internal/messages").status_code == 405


@pytest.mark.parametrize("content", ["", "   ", "x" * 10_000, "🙂🚀", "שלום עולם", "**bold** `code`\n> quote", "\u0000"])
def test_unusual_content_gets_a_sensible_answer(client: FlaskClient, content: str) -> None:
    status, body = post_message(client, "odd@example.com", content)
    assert status == 200 and body["replies"] == 1
    assert replies_to("odd@example.com")
