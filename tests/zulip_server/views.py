"""The endpoints: each takes a `Call` and returns the JSON fields of a success."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .events import EventQueue
from .models import Message, Stream, User
from .narrow import BadNarrow, parse_narrow
from .params import Params
from .realm import LARGER_THAN_MAX_MESSAGE_ID, ApiError, Realm


@dataclass(frozen=True)
class ServerInfo:
    """What GET /server_settings and POST /register tell about the server."""

    url: str
    realm_name: str
    zulip_version: str
    feature_level: int
    longpoll_timeout_seconds: int


@dataclass
class Call:
    """One authenticated API call."""

    realm: Realm
    info: ServerInfo
    user: User
    params: Params
    path_args: dict[str, Any]


Json = dict[str, Any]
View = Callable[[Call], Json]


def server_settings(info: ServerInfo) -> Json:
    """GET /server_settings (no authentication)."""
    return {
        "authentication_methods": {"password": True, "dev": False, "email": True},
        "external_authentication_methods": [],
        "zulip_version": info.zulip_version,
        "zulip_merge_base": info.zulip_version,
        "zulip_feature_level": info.feature_level,
        "push_notifications_enabled": False,
        "is_incompatible": False,
        "email_auth_enabled": True,
        "require_email_format_usernames": True,
        "realm_uri": info.url,
        "realm_url": info.url,
        "realm_name": info.realm_name,
        "realm_icon": info.url + "/static/images/logo/zulip-icon-128x128.png",
        "realm_description": "<p>Lessonbot test organization</p>",
        "realm_web_public_access_enabled": False,
    }


def register(call: Call) -> Json:
    """POST /register: create an event queue and return the initial state."""
    params = call.params
    event_types = params.json("event_types")
    try:
        narrow = parse_narrow(params.raw("narrow"), call.info.feature_level)
    except BadNarrow as error:
        raise ApiError(str(error), error.code) from None
    queue = call.realm.register(
        EventQueue(
            user_id=call.user.id,
            event_types=frozenset(event_types) if event_types is not None else None,
            narrow=narrow,
            all_public_streams=params.boolean("all_public_streams", False),
            apply_markdown=params.boolean("apply_markdown", False),
            client_gravatar=params.boolean("client_gravatar", False),
        )
    )
    fetch = params.json("fetch_event_types", event_types)
    state: Json = {
        "queue_id": queue.id,
        "last_event_id": -1,
        "zulip_version": call.info.zulip_version,
        "zulip_feature_level": call.info.feature_level,
        "zulip_merge_base": call.info.zulip_version,
        "event_queue_longpoll_timeout_seconds": call.info.longpoll_timeout_seconds,
    }
    state.update(_initial_state(call, None if fetch is None else set(fetch)))
    return state


def _initial_state(call: Call, fetch: set[str] | None) -> Json:
    state: Json = {}
    wanted = (lambda name: True) if fetch is None else fetch.__contains__
    if wanted("message"):
        state["max_message_id"] = _max_message_id(call.realm)
    if wanted("realm_user"):
        state["realm_users"] = [user.to_api() for user in call.realm.users.values()]
    if wanted("subscription"):
        state["subscriptions"] = _subscriptions_of(call, include_subscribers=False)
        state["unsubscribed"] = []
        state["never_subscribed"] = []
    return state


def get_events(call: Call) -> Json:
    """GET /events: long-poll the queue (heartbeat when nothing happens)."""
    queue = call.realm.queue_for(call.user, call.params.string("queue_id", required=True))
    last_event_id = call.params.json("last_event_id")
    events = queue.poll(
        None if last_event_id is None else int(last_event_id),
        block=not call.params.boolean("dont_block", False),
        heartbeat=call.realm.heartbeat_seconds,
    )
    return {"events": events, "queue_id": queue.id}


def delete_events(call: Call) -> Json:
    """DELETE /events."""
    call.realm.delete_queue(call.user, call.params.string("queue_id", required=True))
    return {}


def send_message(call: Call) -> Json:
    """POST /messages: a direct message (`private`/`direct`) or a stream message."""
    params = call.params
    kind = params.string("type", required=True)
    content = params.string("content", required=True)
    if not content.strip():
        raise ApiError("Message must not be empty")
    if len(content.encode()) > 10000:
        raise ApiError("Message too long")
    client = "API"
    if kind in ("private", "direct"):
        recipients = [_recipient(call.realm, key) for key in params.user_list("to")]
        message = call.realm.send_private(call.user, recipients, content, client)
    elif kind in ("stream", "channel"):
        topic = params.optional("topic") or params.optional("subject")
        if topic is None:
            raise ApiError("Missing topic", "REQUEST_VARIABLE_MISSING", var_name="topic")
        stream = _target_stream(call.realm, params.string("to", required=True))
        message = call.realm.send_stream(call.user, stream, topic, content, client)
    else:
        raise ApiError("Invalid message type")
    return {"id": message.id}


def _recipient(realm: Realm, key: str | int) -> User:
    user = realm.find_user(key)
    if user is None:
        raise ApiError(f"Invalid email '{key}'" if isinstance(key, str) else f"Invalid user ID {key}")
    return user


def _target_stream(realm: Realm, raw: str) -> Stream:
    key: str | int = raw
    if raw.isdigit():
        key = int(raw)
    elif raw.startswith("["):
        values = json.loads(raw)
        key = values[0] if values else ""
    stream = realm.find_stream(key)
    if stream is None:
        raise ApiError(f"Stream '{key}' does not exist", "STREAM_DOES_NOT_EXIST", stream=str(key))
    return stream


def get_messages(call: Call) -> Json:
    """GET /messages: anchor, num_before/num_after, narrow, include_anchor."""
    params = call.params
    try:
        terms = parse_narrow(params.raw("narrow"), call.info.feature_level)
    except BadNarrow as error:
        raise ApiError(str(error), error.code) from None
    anchor = _anchor(params)
    num_before = params.integer("num_before", required=True)
    num_after = params.integer("num_after", required=True)
    if num_before < 0 or num_after < 0 or num_before + num_after > 5000:
        raise ApiError("Too many messages requested (maximum 5000).")
    try:
        fetched = call.realm.fetch(call.user, terms, anchor, num_before, num_after, params.boolean("include_anchor", True))
    except BadNarrow as error:
        raise ApiError(str(error), error.code) from None
    markdown = params.boolean("apply_markdown", True)
    return {
        "messages": [_with_flags(m, call.user, markdown) for m in fetched.messages],
        "anchor": fetched.anchor,
        "found_anchor": fetched.found_anchor,
        "found_oldest": fetched.found_oldest,
        "found_newest": fetched.found_newest,
        "history_limited": False,
    }


def _anchor(params: Params) -> str | int:
    raw = params.optional("anchor")
    if raw is None:
        if params.boolean("use_first_unread_anchor", False):
            return "first_unread"
        raise ApiError("Missing 'anchor' argument", "REQUEST_VARIABLE_MISSING", var_name="anchor")
    if raw in ("newest", "oldest", "first_unread"):
        return raw
    try:
        return max(0, min(int(raw), LARGER_THAN_MAX_MESSAGE_ID))
    except ValueError:
        raise ApiError("Invalid anchor") from None


def _with_flags(message: Message, user: User, markdown: bool) -> Json:
    data = message.to_api(apply_markdown=markdown)
    flags = message.flags.get(user.id)
    data["flags"] = sorted(flags) if flags is not None else ["historical", "read"]
    return data


def get_single_message(call: Call) -> Json:
    """GET /messages/{message_id}."""
    message = call.realm.get_message(call.path_args["message_id"], call.user)
    markdown = call.params.boolean("apply_markdown", True)
    return {"message": _with_flags(message, call.user, markdown), "raw_content": message.content}


def update_flags(call: Call) -> Json:
    """POST /messages/flags: op add/remove, flag read/starred."""
    op = call.params.string("op", required=True)
    flag = call.params.string("flag", required=True)
    if op not in ("add", "remove") or flag not in ("read", "starred"):
        raise ApiError("Invalid flag or op")
    ids = call.params.json("messages", required=True)
    return {"messages": call.realm.update_flags(call.user, ids, flag, op == "add")}


def add_reaction(call: Call) -> Json:
    """POST /messages/{message_id}/reactions."""
    params = call.params
    call.realm.add_reaction(
        call.user,
        call.path_args["message_id"],
        params.string("emoji_name", required=True),
        params.optional("emoji_code"),
        params.string("reaction_type", "unicode_emoji"),
    )
    return {}


def remove_reaction(call: Call) -> Json:
    """DELETE /messages/{message_id}/reactions."""
    params = call.params
    name, code = params.optional("emoji_name"), params.optional("emoji_code")
    if name is None and code is None:
        raise ApiError("At least one of the following arguments must be present: emoji_name, emoji_code")
    call.realm.remove_reaction(call.user, call.path_args["message_id"], name, code)
    return {}


def get_own_user(call: Call) -> Json:
    """GET /users/me."""
    data = call.user.to_api()
    data.pop("bot_type", None)
    data.pop("bot_owner_id", None)
    data["max_message_id"] = _max_message_id(call.realm)
    data["profile_data"] = {}
    return data


def get_users(call: Call) -> Json:
    """GET /users."""
    return {"members": [user.to_api() for user in call.realm.users.values()]}


def get_user(call: Call) -> Json:
    """GET /users/{user_id} (or by email, as newer servers accept)."""
    user = call.realm.find_user(call.path_args["user_key"])
    if user is None:
        raise ApiError("No such user", "BAD_REQUEST")
    return {"user": user.to_api()}


def get_subscription_status(call: Call) -> Json:
    """GET /users/{user_id}/subscriptions/{stream_id}: is that user subscribed to that stream?"""
    user = call.realm.find_user(call.path_args["user_key"])
    if user is None:
        raise ApiError("No such user", "BAD_REQUEST")
    stream = next((item for item in call.realm.visible_streams(call.user) if item.id == call.path_args["stream_id"]), None)
    if stream is None:
        raise ApiError("Invalid stream ID", "BAD_REQUEST")
    return {"is_subscribed": user.id in stream.subscribers}


def get_streams(call: Call) -> Json:
    """GET /streams."""
    return {"streams": [stream.to_api() for stream in call.realm.visible_streams(call.user)]}


def get_stream_id(call: Call) -> Json:
    """GET /get_stream_id."""
    name = call.params.string("stream", required=True)
    stream = call.realm.find_stream(name)
    if stream is None:
        raise ApiError(f"Invalid stream name '{name}'", "BAD_REQUEST")
    return {"stream_id": stream.id}


def get_subscriptions(call: Call) -> Json:
    """GET /users/me/subscriptions."""
    include = call.params.boolean("include_subscribers", False)
    return {"subscriptions": _subscriptions_of(call, include)}


def _subscriptions_of(call: Call, include_subscribers: bool) -> list[Json]:
    return [
        stream.to_subscription(include_subscribers)
        for stream in call.realm.visible_streams(call.user)
        if call.user.id in stream.subscribers
    ]


def add_subscriptions(call: Call) -> Json:
    """POST /users/me/subscriptions: creates missing streams, answers per user id."""
    requested = call.params.json("subscriptions", required=True)
    invite_only = call.params.boolean("invite_only", False)
    principals = _principals(call)
    subscribed: dict[str, list[str]] = {}
    already: dict[str, list[str]] = {}
    for item in requested:
        stream = call.realm.find_stream(item["name"]) or call.realm.add_stream(
            item["name"], description=item.get("description", ""), invite_only=invite_only
        )
        for user in principals:
            bucket = subscribed if call.realm.subscribe(user, stream) else already
            bucket.setdefault(str(user.id), []).append(stream.name)
    return {"subscribed": subscribed, "already_subscribed": already}


def remove_subscriptions(call: Call) -> Json:
    """DELETE /users/me/subscriptions."""
    names = call.params.json("subscriptions", required=True)
    removed: list[str] = []
    not_removed: list[str] = []
    for name in names:
        stream = call.realm.find_stream(name)
        if stream is None:
            raise ApiError(f"Stream(s) ({name}) do not exist", "STREAM_DOES_NOT_EXIST", stream=name)
        results = [call.realm.unsubscribe(user, stream) for user in _principals(call)]
        done = all(results)
        (removed if done else not_removed).append(stream.name)
    return {"removed": removed, "not_removed": not_removed}


def _principals(call: Call) -> list[User]:
    if call.params.raw("principals") is None:
        return [call.user]
    return [_recipient(call.realm, key) for key in call.params.user_list("principals")]


def get_storage(call: Call) -> Json:
    """GET /bot_storage (used by zulip_bots' StateHandler)."""
    storage = call.realm.storage.get(call.user.id, {})
    keys = call.params.json("keys")
    if keys is None:
        return {"storage": dict(storage)}
    missing_keys = [key for key in keys if key not in storage]
    if missing_keys:
        raise ApiError(f"Key does not exist: {missing_keys[0]}")
    return {"storage": {key: storage[key] for key in keys}}


def put_storage(call: Call) -> Json:
    """PUT /bot_storage."""
    values = call.params.json("storage", required=True)
    with call.realm.lock:
        call.realm.storage.setdefault(call.user.id, {}).update({str(key): str(value) for key, value in values.items()})
    return {}


def set_typing(call: Call) -> Json:
    """POST /typing: accepted and ignored."""
    call.params.string("op", required=True)
    return {}


def _max_message_id(realm: Realm) -> int:
    with realm.lock:
        return realm.messages[-1].id if realm.messages else -1
