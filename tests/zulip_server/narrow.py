"""Zulip narrows: parse the `narrow` parameter and test messages against it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import Message, User


class BadNarrow(ValueError):
    """The narrow cannot be understood: 400 with `code` (BAD_NARROW, or BAD_REQUEST for a badly typed operand)."""

    def __init__(self, message: str, code: str = "BAD_NARROW") -> None:
        super().__init__(message)
        self.code = code


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
DM_FEATURE_LEVEL = 177  # Zulip 7.0 added the `dm` and `dm-including` operators and `is:dm`
LATEST_FEATURE_LEVEL = 10_000
NEW_IN_177 = frozenset({"dm", "dm-including"})

# Operand types, as zerver/lib/narrow.py's NarrowParameter.validate_terms checks them.
OPERATORS_SUPPORTING_ID = frozenset({"channel", "stream", "id", "sender", "group-pm-with", "dm-including"})
OPERATORS_SUPPORTING_IDS = frozenset({"pm-with", "dm"})
OPERATORS_NON_EMPTY_OPERAND = frozenset({"search"})


def parse_narrow(raw: str | list[Any] | None, feature_level: int = LATEST_FEATURE_LEVEL) -> list[Term]:
    """Parse a narrow given as JSON text, in the list or the dict form, as a server of that feature level would."""
    if raw is None or raw == "":
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise BadNarrow("Invalid narrow: not JSON", "BAD_REQUEST") from None
    if not isinstance(value, list):
        raise BadNarrow("narrow is not a list", "BAD_REQUEST")
    return [_parse_term(item, feature_level) for item in value]


def _parse_term(item: Any, feature_level: int) -> Term:
    operator, operand, negated = _unpack(item)
    _validate_operand(operator, operand)
    if not isinstance(operator, str):
        raise BadNarrow("operator is not a string", "BAD_REQUEST")
    if not isinstance(negated, bool):
        raise BadNarrow("negated is not a boolean", "BAD_REQUEST")
    if operator.startswith("-"):
        operator, negated = operator[1:], True
    if feature_level < DM_FEATURE_LEVEL and operator in NEW_IN_177:
        raise BadNarrow(f"Invalid narrow operator: unknown operator {operator}")
    operator = ALIASES.get(operator, operator)
    if operator not in MATCHERS:
        raise BadNarrow(f"Invalid narrow operator: unknown operator {operator}")
    if operator == "is" and operand == "dm" and feature_level < DM_FEATURE_LEVEL:
        raise BadNarrow("Invalid narrow operator: unknown 'is' operand dm")
    return Term(operator, operand, negated)


def _unpack(item: Any) -> tuple[Any, Any, Any]:
    """(operator, operand, negated) of a term in the dict or the list form."""
    if isinstance(item, dict):
        if item.get("operand") is None:
            raise BadNarrow("operand is missing", "BAD_REQUEST")
        if item.get("operator") is None:
            raise BadNarrow("operator is missing", "BAD_REQUEST")
        return item["operator"], item["operand"], item.get("negated", False)
    if isinstance(item, list) and len(item) == 2:
        return item[0], item[1], False
    raise BadNarrow("dict or list required", "BAD_REQUEST")


def _string_or_int(operand: Any) -> None:
    if not isinstance(operand, str) and not _is_int(operand):
        raise BadNarrow("operand is not a string or integer", "BAD_REQUEST")


def _string_or_int_list(operand: Any) -> None:
    if isinstance(operand, str):
        return
    if not isinstance(operand, list):
        raise BadNarrow("operand is not a string or an integer list", "BAD_REQUEST")
    for index, element in enumerate(operand):
        if not _is_int(element):
            raise BadNarrow(f"operand[{index}] is not an integer", "BAD_REQUEST")


def _required_string(operand: Any) -> None:
    _string(operand)
    if not operand.strip():
        raise BadNarrow("operand cannot be blank.", "BAD_REQUEST")


def _string(operand: Any) -> None:
    if not isinstance(operand, str):
        raise BadNarrow("operand is not a string", "BAD_REQUEST")


def _validate_operand(operator: Any, operand: Any) -> None:
    """Zulip's operand validators: check_string_or_int, check_string_or_int_list, check_required_string, check_string."""
    if operator in OPERATORS_SUPPORTING_ID:
        _string_or_int(operand)
    elif operator in OPERATORS_SUPPORTING_IDS:
        _string_or_int_list(operand)
    elif operator in OPERATORS_NON_EMPTY_OPERAND:
        _required_string(operand)
    else:
        _string(operand)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
