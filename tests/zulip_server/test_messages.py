"""Sending and fetching messages with the official `zulip` client."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .contract import ContractChecker
from .models import User
from .server import ZulipTestServer


def _send_dm(client: Any, to: list[Any], content: str) -> int:
    result = client.send_message({"type": "private", "to": to, "content": content})
    assert result["result"] == "success", result
    return int(result["id"])


def test_direct_message_by_email_is_stored_and_answered_with_its_id(zs: ZulipTestServer, alice: User, bot: User) -> None:
    message_id = _send_dm(zs.client(alice), [bot.email], "help")

    [stored] = zs.messages
    assert (stored.id, stored.sender, stored.content) == (message_id, alice, "help")
    assert stored.participant_ids() == {alice.id, bot.id}
    assert zs.messages_to(bot) == [stored]


def test_direct_message_type_and_user_ids_as_newer_clients_send_them(zs: ZulipTestServer, alice: User, bot: User) -> None:
    result = zs.client(alice).send_message({"type": "direct", "to": [bot.id], "content": "hi"})

    assert result["result"] == "success"
    assert zs.messages_to(bot)[0].content == "hi"


def test_bot_reads_the_direct_message_with_display_recipient_and_flags(zs: ZulipTestServer, alice: User, bot: User) -> None:
    _send_dm(zs.client(alice), [bot.email], "status")

    result = zs.client(bot).get_messages({"anchor": "newest", "num_before": 10, "num_after": 0, "apply_markdown": False})

    [message] = result["messages"]
    assert message["content"] == "status"
    assert message["type"] == "private"
    assert message["sender_email"] == alice.email
    assert {r["email"] for r in message["display_recipient"]} == {alice.email, bot.email}
    assert message["flags"] == []
    assert message["reactions"] == []


def test_markdown_is_rendered_unless_apply_markdown_is_false(zs: ZulipTestServer, alice: User, bot: User) -> None:
    _send_dm(zs.client(alice), [bot.email], "hello @**Lessonbot**")
    client = zs.client(bot)

    rendered = client.get_messages({"anchor": "newest", "num_before": 1, "num_after": 0})
    raw = client.get_messages({"anchor": "newest", "num_before": 1, "num_after": 0, "apply_markdown": False})

    assert rendered["messages"][0]["content"].startswith('<p>hello <span class="user-mention"')
    assert rendered["messages"][0]["content_type"] == "text/html"
    assert raw["messages"][0]["content"] == "hello @**Lessonbot**"


def test_stream_message_needs_a_topic_and_lists_the_stream(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.add_stream("lessons", subscribers=[alice, bot])
    client = zs.client(alice)

    missing = client.send_message({"type": "stream", "to": "lessons", "content": "x"})
    sent = client.send_message({"type": "stream", "to": "lessons", "topic": "git", "content": "done"})

    assert missing["code"] == "REQUEST_VARIABLE_MISSING"
    assert sent["result"] == "success"
    stored = zs.messages[-1]
    assert (stored.stream and stored.stream.name, stored.topic) == ("lessons", "git")


@pytest.mark.parametrize(
    ("request_fields", "code", "fragment"),
    [
        ({"type": "private", "to": ["nobody@example.com"], "content": "x"}, "BAD_REQUEST", "Invalid email"),
        ({"type": "stream", "to": "nowhere", "topic": "t", "content": "x"}, "STREAM_DOES_NOT_EXIST", "does not exist"),
        ({"type": "private", "to": ["alice@example.com"], "content": "  "}, "BAD_REQUEST", "empty"),
        ({"type": "private", "to": ["alice@example.com"]}, "REQUEST_VARIABLE_MISSING", "Missing 'content'"),
    ],
)
def test_bad_send_requests_answer_zulip_errors(
    zs: ZulipTestServer,
    contract: ContractChecker,
    alice: User,
    bot: User,
    request_fields: dict[str, Any],
    code: str,
    fragment: str,
) -> None:
    result = zs.client(bot).send_message(request_fields)

    if "content" not in request_fields:
        [caught] = contract.excuse("POST", "/api/v1/messages")
        assert "content" in caught.problem
    assert result["result"] == "error"
    assert result["code"] == code
    assert fragment in result["msg"]
    assert zs.messages == []


def _history(zs: ZulipTestServer, alice: User, bot: User, bob: User) -> list[int]:
    """Six messages: DMs alice→bot ×2, bob→bot, bot→alice, stream ×2."""
    zs.add_stream("general", subscribers=[alice, bot, bob])
    ids = [
        zs.send_direct(alice, [bot], "one").id,
        zs.send_direct(alice, [bot], "two").id,
        zs.send_direct(bob, [bot], "from bob").id,
        zs.send_direct(bot, [alice], "reply").id,
        zs.send_stream(alice, "general", "git", "stream hello").id,
        zs.send_stream(bob, "general", "zulip", "other topic").id,
    ]
    return ids


def _fetch(zs: ZulipTestServer, user: User, **request: Any) -> dict[str, Any]:
    request.setdefault("apply_markdown", False)
    result = zs.client(user).get_messages(request)
    assert result["result"] == "success", result
    return result


@pytest.mark.parametrize(
    ("anchor", "before", "after", "include_anchor", "expected", "oldest", "newest", "found"),
    [
        ("newest", 3, 0, True, [4, 5, 6], False, True, False),
        ("oldest", 0, 2, True, [1, 2], True, False, False),
        (3, 1, 1, True, [2, 3, 4], False, False, True),
        (3, 1, 1, False, [2, 4], False, False, False),
        (3, 10, 10, True, [1, 2, 3, 4, 5, 6], True, True, True),
        (100, 2, 2, True, [5, 6], False, True, False),
    ],
)
def test_anchors_windows_and_found_flags(
    zs: ZulipTestServer,
    alice: User,
    bot: User,
    bob: User,
    anchor: Any,
    before: int,
    after: int,
    include_anchor: bool,
    expected: list[int],
    oldest: bool,
    newest: bool,
    found: bool,
) -> None:
    _history(zs, alice, bot, bob)

    result = _fetch(zs, bot, anchor=anchor, num_before=before, num_after=after, include_anchor=include_anchor)

    assert [m["id"] for m in result["messages"]] == expected
    assert (result["found_oldest"], result["found_newest"]) == (oldest, newest)
    assert result["found_anchor"] is found


def test_first_unread_anchor_follows_the_read_flag(zs: ZulipTestServer, alice: User, bot: User, bob: User) -> None:
    _history(zs, alice, bot, bob)
    client = zs.client(bot)

    first = _fetch(zs, bot, anchor="first_unread", num_before=0, num_after=1)
    client.update_message_flags({"messages": [1, 2], "op": "add", "flag": "read"})
    later = _fetch(zs, bot, anchor="first_unread", num_before=0, num_after=1)

    assert first["anchor"] == 1
    assert later["anchor"] == 3
    # The anchor comes on top of num_after, as in Zulip.
    assert [m["id"] for m in later["messages"]] == [3, 4]


@pytest.mark.parametrize(
    ("narrow", "expected"),
    [
        ([["dm", "alice@example.com"]], [1, 2, 4]),
        ([["pm-with", "alice@example.com"]], [1, 2, 4]),
        ([{"operator": "dm", "operand": ["ALICE_ID"]}], [1, 2, 4]),
        ([["is", "private"]], [1, 2, 3, 4]),
        ([["is", "dm"], ["sender", "bob@example.com"]], [3]),
        ([["stream", "general"]], [5, 6]),
        ([["stream", "general"], ["topic", "GIT"]], [5]),
        ([["channel", "general"], {"operator": "topic", "operand": "git", "negated": True}], [6]),
        ([["sender", "alice@example.com"]], [1, 2, 5]),
        ([["search", "hello"]], [5]),
        ([{"operator": "dm-including", "operand": "bob@example.com"}], [3]),
        ([["id", "4"]], [4]),
    ],
)
def test_narrows_select_the_matching_messages(
    zs: ZulipTestServer,
    alice: User,
    bot: User,
    bob: User,
    narrow: list[Any],
    expected: list[int],
) -> None:
    _history(zs, alice, bot, bob)
    narrow = [{**t, "operand": [alice.id]} if isinstance(t, dict) and t["operand"] == ["ALICE_ID"] else t for t in narrow]

    result = _fetch(zs, bot, anchor="oldest", num_before=0, num_after=100, narrow=narrow)

    assert [m["id"] for m in result["messages"]] == expected


def test_unknown_narrow_operator_is_bad_narrow(zs: ZulipTestServer, bot: User) -> None:
    result = zs.client(bot).get_messages({"anchor": "newest", "num_before": 1, "num_after": 0, "narrow": [["colour", "red"]]})

    assert (result["result"], result["code"]) == ("error", "BAD_NARROW")


def test_public_stream_history_is_visible_to_a_late_subscriber(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.add_stream("general", subscribers=[alice])
    zs.send_stream(alice, "general", "t", "before bob came")
    carol = zs.add_user("carol@example.com", "Carol")

    everything = _fetch(zs, carol, anchor="newest", num_before=5, num_after=0)
    in_stream = _fetch(zs, carol, anchor="newest", num_before=5, num_after=0, narrow=[["stream", "general"]])

    assert everything["messages"] == []
    assert in_stream["messages"][0]["flags"] == ["historical", "read"]


def test_reactions_are_added_listed_and_removed(zs: ZulipTestServer, alice: User, bot: User) -> None:
    message_id = _send_dm(zs.client(alice), [bot.email], "check")
    client = zs.client(bot)

    added = client.add_reaction({"message_id": message_id, "emoji_name": "thumbs_up"})
    again = client.add_reaction({"message_id": message_id, "emoji_name": "thumbs_up"})
    listed = _fetch(zs, alice, anchor=message_id, num_before=0, num_after=0)
    removed = client.remove_reaction({"message_id": message_id, "emoji_name": "thumbs_up"})
    missing = client.remove_reaction({"message_id": message_id, "emoji_name": "thumbs_up"})

    assert added["result"] == "success"
    assert again["code"] == "REACTION_ALREADY_EXISTS"
    [reaction] = listed["messages"][0]["reactions"]
    assert reaction["emoji_name"] == "thumbs_up"
    assert reaction["emoji_code"] == "1f44d"
    assert reaction["user_id"] == bot.id
    assert removed["result"] == "success"
    assert missing["code"] == "REACTION_DOES_NOT_EXIST"
    assert zs.messages[0].reactions == []


def test_reaction_to_an_invisible_message_is_refused(zs: ZulipTestServer, alice: User, bot: User, bob: User) -> None:
    message_id = zs.send_direct(alice, [bot], "private").id

    result = zs.client(bob).add_reaction({"message_id": message_id, "emoji_name": "tada"})

    assert (result["result"], result["msg"]) == ("error", "Invalid message(s)")


def test_users_and_own_profile(zs: ZulipTestServer, alice: User, bot: User) -> None:
    client = zs.client(bot)

    me = client.get_profile()
    members = client.get_members()
    one = client.get_user_by_id(alice.id)

    assert (me["user_id"], me["email"], me["full_name"]) == (bot.id, bot.email, "Lessonbot")
    assert me["is_bot"] is True
    assert {m["email"] for m in members["members"]} == {alice.email, bot.email}
    assert one["user"]["full_name"] == "Alice Student"


def test_wrong_api_key_is_401(zs: ZulipTestServer, alice: User) -> None:
    response = requests.get(f"{zs.url}/api/v1/users/me", auth=(alice.email, "wrong"), timeout=5)
    anonymous = requests.get(f"{zs.url}/api/v1/users/me", timeout=5)

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_API_KEY"
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")


def test_streams_and_subscriptions(zs: ZulipTestServer, alice: User, bot: User) -> None:
    zs.add_stream("announcements")
    zs.add_stream("teachers", invite_only=True)
    client = zs.client(alice)

    added = client.add_subscriptions([{"name": "announcements"}, {"name": "new-stream"}])
    again = client.add_subscriptions([{"name": "announcements"}])
    listed = client.get_subscriptions()
    streams = client.get_streams()
    removed = client.remove_subscriptions(["new-stream"])
    after = client.get_subscriptions()

    assert added["subscribed"] == {str(alice.id): ["announcements", "new-stream"]}
    assert again["already_subscribed"] == {str(alice.id): ["announcements"]}
    assert {s["name"] for s in listed["subscriptions"]} == {"announcements", "new-stream"}
    assert {s["name"] for s in streams["streams"]} == {"announcements", "new-stream"}
    assert removed["removed"] == ["new-stream"]
    assert [s["name"] for s in after["subscriptions"]] == ["announcements"]
    assert client.get_stream_id("announcements")["stream_id"] == 1


def test_single_message_with_its_raw_content(zs: ZulipTestServer, alice: User, bot: User) -> None:
    message_id = zs.send_direct(alice, [bot], "**bold** move").id

    result: dict[str, Any] = dict(zs.client(bot).get_raw_message(message_id))

    assert result["raw_content"] == "**bold** move"
    assert result["message"]["id"] == message_id
