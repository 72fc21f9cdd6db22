"""`/_test/*`: the Python control API over HTTP, for a server in another process.

A benchmark runs the server in its own process (so that it does not share the
GIL with thousands of clients) and steers it through these endpoints, which
`SpawnedZulipTestServer` wraps. They are not part of Zulip's API: no faults,
no rate limit, no authentication (the server listens on 127.0.0.1 only).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .faults import Fault
from .models import Message, User

if TYPE_CHECKING:
    from .server import ZulipTestServer

PREFIX = "/_test/"
Handler = Callable[["ZulipTestServer", dict[str, Any]], Any]


def user_json(user: User) -> dict[str, Any]:
    """A user with its credentials."""
    return {"id": user.id, "email": user.email, "api_key": user.api_key, "full_name": user.full_name, "is_bot": user.is_bot}


def message_json(message: Message) -> dict[str, Any]:
    """A stored message, as the control API lists it."""
    return {
        "id": message.id,
        "sender_id": message.sender.id,
        "type": message.type,
        "recipient_ids": sorted(message.participant_ids()),
        "stream": message.stream.name if message.stream else None,
        "topic": message.topic,
        "content": message.content,
        "timestamp": message.timestamp,
        "stored_at": message.stored_at,
    }


def _state(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    """With ``user_id``: only that user's queues (a benchmark waits for one bot's own queue); with ``requests``
    as well, what that user asked so far, by method and path (a benchmark counts a bot's calls)."""
    owner = zs.user(int(body["user_id"])) if body.get("user_id") else None
    state = {"url": zs.url, "users": [user_json(u) for u in zs.users], "queues": zs.queue_ids(owner),
             "message_count": len(zs.messages)}
    if owner is not None and body.get("requests"):  # a walk over the whole request log: only when asked
        state["requests"] = dict(Counter(f"{r.method} {r.path}" for r in zs.request_log if r.user_id == owner.id))
    return state


def _add_user(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    user = zs.add_user(body["email"], body["full_name"], bot=bool(body.get("bot", False)), api_key=body.get("api_key"))
    return user_json(user)


def _messages(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    after = int(body.get("after_id", 0))
    return [message_json(m) for m in zs.messages if m.id > after]


def _rate_limit(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    if body.get("max_requests") is None:
        zs.clear_rate_limit()
    else:
        apart = body.get("apart")
        zs.set_rate_limit(
            int(body["max_requests"]), float(body["per_seconds"]), **({"apart": apart} if apart is not None else {})
        )
    return {}


def _faults(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    kind, endpoint = body.get("kind"), body.get("endpoint")
    if kind == "clear":
        zs.faults.clear()
    elif kind == "script":
        zs.faults.script([_script_item(item) for item in body["items"]], endpoint)
    elif kind == "error_rate":
        zs.faults.set_error_rate(float(body["fraction"]), int(body.get("status", 503)), endpoint)
    elif kind == "drop_rate":
        zs.faults.set_drop_rate(float(body["fraction"]), endpoint)
    elif kind == "delay":
        zs.faults.set_delay(float(body["seconds"]), endpoint, float(body.get("fraction", 1.0)))
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return {"injected": zs.faults.count()}


def _script_item(item: Any) -> Any:
    if isinstance(item, dict):
        return Fault(
            item["kind"],
            status=int(item.get("status", 502)),
            seconds=float(item.get("seconds", 0.0)),
            after=bool(item.get("after", False)),
        )
    return item


def _expire_queues(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    user = zs.user(body["email"]) if body.get("email") else None
    return {"expired": zs.expire_queues(user)}


def _settings(zs: ZulipTestServer, body: dict[str, Any]) -> Any:
    if "heartbeat_seconds" in body:
        zs.set_heartbeat(float(body["heartbeat_seconds"]))
    if "queue_timeout_seconds" in body:
        zs.set_queue_timeout(float(body["queue_timeout_seconds"]))
    return {}


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "state"): _state,
    ("POST", "users"): _add_user,
    ("GET", "messages"): _messages,
    ("POST", "rate_limit"): _rate_limit,
    ("POST", "faults"): _faults,
    ("POST", "expire_queues"): _expire_queues,
    ("POST", "settings"): _settings,
}


def handle(zs: ZulipTestServer, request: Request) -> Response:
    """Answer one `/_test/<name>` request with JSON."""
    handler = ROUTES.get((request.method, request.path.removeprefix(PREFIX)))
    if handler is None:
        return Response(json.dumps({"error": "no such control endpoint"}), 404, content_type="application/json")
    body = request.get_json(silent=True) or dict(request.args)
    try:
        result = handler(zs, body)
    except (KeyError, ValueError, TypeError) as error:
        return Response(json.dumps({"error": repr(error)}), 400, content_type="application/json")
    return Response(json.dumps(result), content_type="application/json")
