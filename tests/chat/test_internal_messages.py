"""POST /internal/messages: token and loopback only, idempotent by message id, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from app.db import db
from app.students.models import Student
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


@pytest.mark.parametrize("content", ["", "   ", "x" * 10_000, "🙂🚀", "שלום עולם", "**bold** `code`\n> quote", "\u200b"])
def test_unusual_content_gets_a_sensible_answer(client: FlaskClient, content: str) -> None:
    status, body = post_message(client, "odd@example.com", content)
    assert status == 200 and body["replies"] == 1
    assert replies_to("odd@example.com")


def _body(**changes: object) -> dict[str, object]:
    return {"message_id": "zulip:900", "sender_email": "bad@example.com", "sender_full_name": "Bad", "sender_id": 77,
            "content": "help", **changes}


@pytest.mark.parametrize(("changes", "detail"), [
    ({"sender_email": "bad\u0000@example.com"}, "sender_email: Value error, must not contain a NUL character"),
    ({"message_id": "zulip:\u0000"}, "message_id: Value error, must not contain a NUL character"),
    ({"content": "help\u0000"}, "content: Value error, must not contain a NUL character"),
    ({"sender_full_name": "A\u0000B"}, "sender_full_name: Value error, must not contain a NUL character"),
    ({"sender_id": True}, "sender_id: Input should be a valid integer"),
    ({"sender_id": False}, "sender_id: Input should be a valid integer"),
    ({"sender_id": "77"}, "sender_id: Input should be a valid integer"),
    ({"sender_id": 7.0}, "sender_id: Input should be a valid integer"),
    ({"sender_id": 2**63}, "sender_id: Input should be less than or equal to 9223372036854775807"),
    ({"sender_id": 10**30}, "sender_id: Input should be less than or equal to 9223372036854775807"),
    ({"sender_id": -(2**63) - 1}, "sender_id: Input should be greater than or equal to 1"),
    ({"sender_id": 0}, "sender_id: Input should be greater than or equal to 1"),
    ({"sender_email": "İ" * 200 + "@example.org"}, "in lower case; at most 254 are allowed"),
    ({"sender_email": "a" * 250 + "@example.org"}, "in lower case; at most 254 are allowed"),
    ({"sender_email": "no-at-sign"}, "is not an email address"),
    ({"message_id": "x" * 101}, "message_id: String should have at most 100 characters"),
    ({"message_id": True}, "message_id: Input should be a valid string"),
    ({"content": None}, "content: Input should be a valid string"),
])
def test_bad_fields_are_a_400_that_says_what_is_wrong(client: FlaskClient, changes: dict[str, object], detail: str) -> None:
    response = client.post("/internal/messages", json=_body(**changes), headers=INTERNAL_HEADERS)
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["error"] == "invalid_body" and body["message"]
    assert any(detail in line for line in body["details"]), body
    assert replies_to("bad@example.com") == []


def test_email_in_mixed_case_is_stored_in_lower_case(client: FlaskClient) -> None:
    response = client.post("/internal/messages", json=_body(sender_email="  Mixed.Case@Example.ORG "), headers=INTERNAL_HEADERS)
    assert response.status_code == 200
    assert len(replies_to("mixed.case@example.org")) == 1


def test_a_changed_zulip_email_is_the_same_student(client: FlaskClient, tmp_path: Path) -> None:
    """Zulip lets people change their email; the user id stays, and so do the student and the run."""
    first = client.post("/internal/messages", headers=INTERNAL_HEADERS, json=_body(
        message_id="zulip:1", sender_email="old@example.com", sender_id=4242, content="start git-basics"))
    assert first.status_code == 200
    second = client.post("/internal/messages", headers=INTERNAL_HEADERS, json=_body(
        message_id="zulip:2", sender_email="New@Example.com", sender_id=4242, content="status"))
    assert second.status_code == 200, second.get_json()
    students = db.session.execute(sa.select(Student.email, Student.zulip_user_id)).all()
    assert students == [("new@example.com", 4242)]
    assert "step 1 of 7" in replies_to("new@example.com")[-1]


def test_a_sender_id_is_taken_over_by_the_email_owner_on_first_contact(client: FlaskClient) -> None:
    """A student known by email only (the console) gets the Zulip id with their first Zulip message."""
    assert post_message(client, "console@example.com", "help")[0] == 200
    response = client.post("/internal/messages", headers=INTERNAL_HEADERS, json=_body(
        message_id="zulip:3", sender_email="console@example.com", sender_id=99))
    assert response.status_code == 200
    assert db.session.execute(sa.select(Student.email, Student.zulip_user_id)).all() == [("console@example.com", 99)]


def test_a_new_email_that_another_student_holds_keeps_both_students(client: FlaskClient) -> None:
    assert post_message(client, "taken@example.com", "help")[0] == 200
    for number, email in enumerate(["mine@example.com", "taken@example.com"]):
        response = client.post("/internal/messages", headers=INTERNAL_HEADERS, json=_body(
            message_id=f"zulip:{10 + number}", sender_email=email, sender_id=5))
        assert response.status_code == 200, response.get_json()
    rows = db.session.execute(sa.select(Student.email, Student.zulip_user_id).order_by(Student.id)).all()
    assert rows == [("taken@example.com", None), ("mine@example.com", 5)]


def test_machine_endpoints_open_no_session_and_send_no_cookie(client: FlaskClient) -> None:
    from flask import session
    from flask.sessions import NullSession

    app = client.application
    for path in ("/internal/messages", "/internal/messages/batch", "/git/hook", "/github/hook", "/health", "/metrics"):
        with app.test_request_context(path, method="POST"):
            app.preprocess_request()
            assert isinstance(session._get_current_object(), NullSession), path  # type: ignore[attr-defined]
    with app.test_request_context("/admin/"):
        assert not isinstance(session._get_current_object(), NullSession)  # type: ignore[attr-defined]
    client.set_cookie("session", "anything")
    body = {"message_id": "m-sessionless", "sender_email": "s@example.com", "content": "help"}
    response = client.post("/internal/messages", json=body, headers=INTERNAL_HEADERS)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
