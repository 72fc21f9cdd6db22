"""The zulip.* checks: what the student did in Zulip since the run started, read through the bot's API.

Every call goes through the bot's shared rate budget (see :mod:`app.zulip.budget`).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from pydantic import Field

from app import state
from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_error, check_type, not_yet
from app.zulip.api import NotConfigured, ZulipApi, ZulipError
from app.zulip.connect import connect

_apis = threading.local()
_user_ids: dict[str, int] = {}
MENTION = re.compile(r"@_?\*\*[^*]+\*\*")
CODE_BLOCK = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def _api() -> ZulipApi:
    """One API per thread, built from the running app's settings."""
    api: ZulipApi | None = getattr(_apis, "api", None)
    if api is None:
        api = connect(state.settings())
        _apis.api = api
    return api


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
                                             "narrow": json.dumps(narrow), "apply_markdown": "false"})
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
    emoji: str | None = Field(default=None, max_length=60, description="An emoji name such as thumbs_up; any if unset.")


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


def _some_message_matches(pattern: re.Pattern[str], missing: str) -> Any:
    """A check: one of the student's messages since the start (in the stream, if given) matches."""

    def check(params: OptionalStreamParams, context: CheckContext) -> CheckResult:
        if any(pattern.search(message.get("content", "")) for message in _student_messages(context, params.stream)):
            return PASSED
        return not_yet(missing)

    return check


code_block = check_type("zulip.code_block", OptionalStreamParams)(
    _guarded(_some_message_matches(CODE_BLOCK, "zulip.no_code_block")))
mentioned = check_type("zulip.mentioned", OptionalStreamParams)(
    _guarded(_some_message_matches(MENTION, "zulip.no_mention")))


@check_type("zulip.reacted", ReactionParams)
@_guarded
def reacted(params: ReactionParams, context: CheckContext) -> CheckResult:
    """The student reacted (with that emoji) to one of the bot's messages to them since the run started."""
    api = _api()
    email = context.run_context["zulip_email"]
    student_id = _user_id(api, email)
    narrow = [{"operator": "dm", "operand": [email]}, {"operator": "sender", "operand": api.email}]
    result = api.call("messages", "GET", {"anchor": "newest", "num_before": 50, "num_after": 0,
                                          "narrow": json.dumps(narrow), "apply_markdown": "false"})
    since = _run_start(context)
    for message in result.get("messages", []):
        if message.get("timestamp", 0) < since:
            continue
        for reaction in message.get("reactions", []):
            by = reaction.get("user_id") or reaction.get("user", {}).get("id")
            if by == student_id and params.emoji in (None, reaction.get("emoji_name")):
                return PASSED
    return not_yet("zulip.no_reaction_emoji", emoji=params.emoji) if params.emoji else not_yet("zulip.no_reaction")
