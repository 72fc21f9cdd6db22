"""Zulip narrows: parse the `narrow` parameter and test messages against it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import Message, User


class BadNarrow(ValueError):
    """The narrow cannot be understood (Zulip answers 400 BAD_NARROW)."""


@dataclass(frozen=True)
class Term:
    """One narrow term, e.g. `stream:general` or `-sender:a@example.com`."""

    operator: str
    operand: Any
    negated: bool = False


ALIASES = {
    "channel": "stream",
    "subject": "topic",
    "pm-with": "dm",
    "group-pm-with": "dm-including",
    "channels": "streams",
}


def parse_narrow(raw: str | list[Any] | None) -> list[Term]:
    """Parse a narrow given as JSON text, in the list or the dict form."""
    if raw is None or raw == "":
        return []
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, list):
        raise BadNarrow("Invalid narrow")
    return [_parse_term(item) for item in value]


def _parse_term(item: Any) -> Term:
    if isinstance(item, dict):
        operator, operand = item.get("operator"), item.get("operand")
        negated = bool(item.get("negated", False))
    elif isinstance(item, list) and len(item) == 2:
        (operator, operand), negated = item, False
    else:
        raise BadNarrow("Invalid narrow element")
    if not isinstance(operator, str):
        raise BadNarrow("Invalid narrow operator")
    if operator.startswith("-"):
        operator, negated = operator[1:], True
    operator = ALIASES.get(operator, operator)
    if operator not in MATCHERS:
        raise BadNarrow(f"Invalid narrow operator: unknown operator {operator}")
    return Term(operator, operand, negated)


class NarrowContext:
    """Looks up users for the terms that name them (by email or by id)."""

    def __init__(self, viewer: User, find_user: Callable[[str | int], User | None]) -> None:
        self.viewer = viewer
        self.find_user = find_user

    def user_ids(self, operand: Any) -> set[int]:
        """Resolve `a@x, b@x`, `[1, 2]` or `7` to user ids (unknown → BadNarrow)."""
        if isinstance(operand, str):
            keys: list[Any] = [part.strip() for part in operand.split(",") if part.strip()]
        elif isinstance(operand, list):
            keys = operand
        else:
            keys = [operand]
        ids = set()
        for key in keys:
            user = self.find_user(key)
            if user is None:
                raise BadNarrow(f"Invalid user: {key}")
            ids.add(user.id)
        return ids


def matches(message: Message, terms: list[Term], context: NarrowContext) -> bool:
    """True when the message satisfies every term of the narrow."""
    return all(MATCHERS[term.operator](message, term.operand, context) != term.negated for term in terms)


def mentions_stream(terms: list[Term]) -> bool:
    """True when the narrow names one stream (so its history is visible)."""
    return any(term.operator == "stream" and not term.negated for term in terms)


def _stream(message: Message, operand: Any, _: NarrowContext) -> bool:
    if message.stream is None:
        return False
    if isinstance(operand, int) or (isinstance(operand, str) and operand.isdigit()):
        return message.stream.id == int(operand)
    return message.stream.name.lower() == str(operand).lower()


def _topic(message: Message, operand: Any, _: NarrowContext) -> bool:
    return message.stream is not None and message.topic.lower() == str(operand).lower()


def _sender(message: Message, operand: Any, context: NarrowContext) -> bool:
    return message.sender.id in context.user_ids(operand)


def _dm(message: Message, operand: Any, context: NarrowContext) -> bool:
    if not message.is_private:
        return False
    wanted = context.user_ids(operand) | {context.viewer.id}
    return message.participant_ids() == wanted


def _dm_including(message: Message, operand: Any, context: NarrowContext) -> bool:
    return message.is_private and context.user_ids(operand) <= message.participant_ids()


def _is(message: Message, operand: Any, context: NarrowContext) -> bool:
    flags = message.flags.get(context.viewer.id, set())
    checks: dict[str, Callable[[], bool]] = {
        "private": lambda: message.is_private,
        "dm": lambda: message.is_private,
        "mentioned": lambda: bool(flags & {"mentioned", "wildcard_mentioned"}),
        "starred": lambda: "starred" in flags,
        "unread": lambda: "read" not in flags,
        "alerted": lambda: "has_alert_word" in flags,
        "resolved": lambda: message.topic.startswith("✔ "),
    }
    if operand not in checks:
        raise BadNarrow(f"Invalid narrow operand: is:{operand}")
    return checks[operand]()


def _search(message: Message, operand: Any, _: NarrowContext) -> bool:
    haystack = (message.content + " " + message.topic).lower()
    return all(word in haystack for word in str(operand).lower().split())


def _id(message: Message, operand: Any, _: NarrowContext) -> bool:
    return message.id == int(operand)


def _streams(message: Message, operand: Any, _: NarrowContext) -> bool:
    if operand != "public":
        raise BadNarrow(f"Invalid narrow operand: streams:{operand}")
    return message.stream is not None and not message.stream.invite_only


def _has(message: Message, operand: Any, _: NarrowContext) -> bool:
    content = message.content.lower()
    probes = {
        "link": "http" in content,
        "attachment": "/user_uploads/" in content,
        "image": any(ext in content for ext in (".png", ".jpg", ".gif")),
        "reaction": bool(message.reactions),
    }
    if operand not in probes:
        raise BadNarrow(f"Invalid narrow operand: has:{operand}")
    return probes[operand]


MATCHERS: dict[str, Callable[[Message, Any, NarrowContext], bool]] = {
    "stream": _stream,
    "topic": _topic,
    "sender": _sender,
    "dm": _dm,
    "dm-including": _dm_including,
    "is": _is,
    "search": _search,
    "id": _id,
    "streams": _streams,
    "has": _has,
}
