"""The zulip.* checks: what the student did in Zulip since the run started, read through the bot's API.

Every call goes through the bot's shared rate budget (see :mod:`app.zulip.budget`) and the
process's one client (:func:`app.zulip.connect.shared_api`). Formatting is judged on the
HTML Zulip rendered, not on the raw text: only a real code block counts as one (a
```` ```quote ```` block does not), and only a mention of a real user counts.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from pydantic import Field

from app import current
from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_error, check_type, not_yet
from app.zulip.api import NotConfigured, ZulipApi, ZulipError
from app.zulip.connect import shared_api

_user_ids: dict[str, int] = {}
DM_FEATURE_LEVEL = 177  # Zulip 7.0: the `dm` narrow operator (`pm-with` before)
# Zulip's names for the emoji lessons ask for, by code point: the web app stores 👍 as `+1`.
EMOJI_CODES = {"+1": "1f44d", "thumbs_up": "1f44d", "like": "1f44d", "-1": "1f44e", "thumbs_down": "1f44e",
               "heart": "2764", "tada": "1f389", "smile": "1f604", "slight_smile": "1f642", "rocket": "1f680",
               "check": "2705", "eyes": "1f440", "wave": "1f44b", "clap": "1f44f", "joy": "1f602"}


def _api() -> ZulipApi:
    """The process's one API for the bot, built from the running app's settings."""
    return shared_api(current.settings())


def _user_id(api: ZulipApi, email: str) -> int:
    """A Zulip user id by email (cached: ids never change). GET /users/{email} is too new for older servers."""
    known: dict[str, int] = _user_ids
    if email.lower() not in known:
        members = api.call("users", "GET").get("members", [])
        known.update({str(member["email"]).lower(): int(member["user_id"]) for member in members})
    if email.lower() not in known:
        raise ZulipError(f"no Zulip user {email}", retryable=False)
    return known[email.lower()]


def _run_start(context: CheckContext) -> int:
    """When the run started, in whole seconds: Zulip's message timestamps have no fraction."""
    return int(float(context.run_context.get("started_ts", 0)))


def _student_messages(context: CheckContext, stream: str | None, topic: str | None = None) -> list[dict[str, Any]]:
    """The student's messages since the run started (newest 100), optionally in one stream and topic."""
    narrow: list[dict[str, str]] = [{"operator": "sender", "operand": context.run_context["zulip_email"]}]
    if stream:
        narrow.append({"operator": "stream", "operand": stream})
    if topic:
        narrow.append({"operator": "topic", "operand": topic})
    result = _api().call("messages", "GET", {"anchor": "newest", "num_before": 100, "num_after": 0,
                                             "narrow": json.dumps(narrow), "apply_markdown": "true"})
    since = _run_start(context)
    return [message for message in result.get("messages", []) if message.get("timestamp", 0) >= since]


def _guarded(check: Any) -> Any:
    """Turn Zulip trouble into an error result the student can act on (try again later)."""

    def run(params: Any, context: CheckContext) -> CheckResult:
        if "zulip_email" not in context.run_context:
            return check_error("zulip.unavailable")
        try:
            return check(params, context)
        except NotConfigured:
            return check_error("zulip.not_configured")
        except ZulipError:
            return check_error("zulip.unavailable")

    run.__name__ = check.__name__
    return run


class StreamParams(CheckParams):
    stream: str = Field(min_length=1, max_length=60)


class PostParams(StreamParams):
    topic: str | None = Field(default=None, max_length=60)


class OptionalStreamParams(CheckParams):
    stream: str | None = Field(default=None, max_length=60)


class ReactionParams(CheckParams):
    emoji: str | None = Field(default=None, max_length=60,
                              description="An emoji name such as thumbs_up, or the emoji itself; any if unset.")


@check_type("zulip.subscribed", StreamParams)
@_guarded
def subscribed(params: StreamParams, context: CheckContext) -> CheckResult:
    api = _api()
    stream_id = api.call("get_stream_id", "GET", {"stream": params.stream})["stream_id"]
    student_id = _user_id(api, context.run_context["zulip_email"])
    status = api.call(f"users/{student_id}/subscriptions/{stream_id}", "GET")
    return PASSED if status.get("is_subscribed") else not_yet("zulip.not_subscribed", stream=params.stream)


@check_type("zulip.posted_in_stream", PostParams)
@_guarded
def posted_in_stream(params: PostParams, context: CheckContext) -> CheckResult:
    if _student_messages(context, params.stream, params.topic):
        return PASSED
    if params.topic:
        return not_yet("zulip.no_post_topic", stream=params.stream, topic=params.topic)
    return not_yet("zulip.no_post", stream=params.stream)


class RenderedMessage(HTMLParser):
    """What a rendered Zulip message contains: code blocks, and the users it mentions."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.code_blocks = 0
        self.mentioned_user_ids: set[int] = set()
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div" and "codehilite" in classes:
            self.code_blocks += 1
        user_id = attributes.get("data-user-id") or ""
        if tag == "span" and "user-mention" in classes and user_id.isdigit():
            self.mentioned_user_ids.add(int(user_id))


def _has_code_block(message: dict[str, Any], _: CheckContext) -> bool:
    return RenderedMessage(str(message.get("content", ""))).code_blocks > 0


def _mentions_someone(message: dict[str, Any], context: CheckContext) -> bool:
    """A mention of a real user other than the student (Zulip renders only those as mentions)."""
    mentioned = RenderedMessage(str(message.get("content", ""))).mentioned_user_ids
    return bool(mentioned - {message.get("sender_id")})


def _some_message_matches(matches: Any, missing: str) -> Any:
    """A check: one of the student's messages since the start (in the stream, if given) matches."""

    def check(params: OptionalStreamParams, context: CheckContext) -> CheckResult:
        if any(matches(message, context) for message in _student_messages(context, params.stream)):
            return PASSED
        return not_yet(missing)

    return check


code_block = check_type("zulip.code_block", OptionalStreamParams)(
    _guarded(_some_message_matches(_has_code_block, "zulip.no_code_block")))
mentioned = check_type("zulip.mentioned", OptionalStreamParams)(
    _guarded(_some_message_matches(_mentions_someone, "zulip.no_mention")))


def emoji_code(emoji: str) -> str | None:
    """Zulip's ``emoji_code`` for an emoji given by name (``thumbs_up``) or as itself (👍); None if unknown."""
    name = emoji.strip(":")
    if name in EMOJI_CODES:
        return EMOJI_CODES[name]
    if name and all(ord(char) > 0x2000 for char in name):
        return "-".join(f"{ord(char):x}" for char in name if char != "\ufe0f")
    return None


def _same_emoji(reaction: dict[str, Any], wanted: str | None) -> bool:
    if wanted is None:
        return True
    code = emoji_code(wanted)
    if code is not None and reaction.get("reaction_type", "unicode_emoji") == "unicode_emoji":
        return reaction.get("emoji_code") == code
    return reaction.get("emoji_name") == wanted.strip(":")


@check_type("zulip.reacted", ReactionParams)
@_guarded
def reacted(params: ReactionParams, context: CheckContext) -> CheckResult:
    """The student reacted (with that emoji) to one of the bot's messages to them since the run started."""
    api = _api()
    email = context.run_context["zulip_email"]
    student_id = _user_id(api, email)
    # Zulip takes a `dm` operand only as a string of emails or a list of integer user ids.
    operator = "dm" if api.feature_level >= DM_FEATURE_LEVEL else "pm-with"
    narrow = [{"operator": operator, "operand": [student_id]}, {"operator": "sender", "operand": api.email}]
    result = api.call("messages", "GET", {"anchor": "newest", "num_before": 50, "num_after": 0,
                                          "narrow": json.dumps(narrow), "apply_markdown": "false"})
    since = _run_start(context)
    for message in result.get("messages", []):
        if message.get("timestamp", 0) < since:
            continue
        for reaction in message.get("reactions", []):
            by = reaction.get("user_id") or reaction.get("user", {}).get("id")
            if by == student_id and _same_emoji(reaction, params.emoji):
                return PASSED
    return not_yet("zulip.no_reaction_emoji", emoji=params.emoji) if params.emoji else not_yet("zulip.no_reaction")
