"""Plain data kept by the Zulip test server: users, streams, messages, reactions."""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REALM_STR = "lessonbot"
MENTION_RE = re.compile(r"@(_?)\*\*([^*|]+)(?:\|(\d+))?\*\*")
WILDCARDS = frozenset({"all", "everyone", "stream", "channel", "topic"})


@dataclass(frozen=True)
class User:
    """A Zulip account: what a client needs to log in as it."""

    id: int
    email: str
    api_key: str
    full_name: str
    is_bot: bool = False
    date_joined: str = "2024-01-01T00:00:00+00:00"

    def basic(self) -> dict[str, Any]:
        """The short form used in `display_recipient` and reactions."""
        return {
            "id": self.id,
            "email": self.email,
            "full_name": self.full_name,
            "is_mirror_dummy": False,
        }

    def to_api(self) -> dict[str, Any]:
        """The `User` object of GET /users and GET /users/{id}."""
        data: dict[str, Any] = {
            "email": self.email,
            "delivery_email": self.email,
            "user_id": self.id,
            "full_name": self.full_name,
            "is_bot": self.is_bot,
            "is_active": True,
            "is_admin": False,
            "is_owner": False,
            "is_guest": False,
            "avatar_url": avatar_url(self.email),
            "avatar_version": 1,
            "timezone": "",
            "date_joined": self.date_joined,
        }
        if self.is_bot:
            data["bot_type"] = 1
            data["bot_owner_id"] = None
        return data


@dataclass
class Stream:
    """A stream (channel) and its subscribers."""

    id: int
    name: str
    description: str = ""
    invite_only: bool = False
    date_created: int = 0
    subscribers: set[int] = field(default_factory=set)
    first_message_id: int | None = None

    def to_api(self) -> dict[str, Any]:
        """The `BasicStream` object of GET /streams."""
        return {
            "stream_id": self.id,
            "name": self.name,
            "description": self.description,
            "rendered_description": render_markdown(self.description) if self.description else "",
            "date_created": self.date_created,
            "invite_only": self.invite_only,
            "is_web_public": False,
            "is_announcement_only": False,
            "stream_post_policy": 1,
            "message_retention_days": None,
            "history_public_to_subscribers": True,
            "first_message_id": self.first_message_id,
        }

    def to_subscription(self, include_subscribers: bool) -> dict[str, Any]:
        """The `Subscriptions` object of GET /users/me/subscriptions."""
        data = self.to_api()
        data.update(
            {
                "color": "#76ce90",
                "is_muted": False,
                "in_home_view": True,
                "pin_to_top": False,
                "desktop_notifications": None,
                "email_notifications": None,
                "push_notifications": None,
                "audible_notifications": None,
                "wildcard_mentions_notify": None,
                "role": 50,
                "stream_weekly_traffic": None,
                "email_address": f"{self.name.replace(' ', '-')}.{self.id}@streams.invalid",
            }
        )
        if include_subscribers:
            data["subscribers"] = sorted(self.subscribers)
        return data


@dataclass
class Reaction:
    """One user's emoji on one message."""

    emoji_name: str
    emoji_code: str
    reaction_type: str
    user: User

    def to_api(self) -> dict[str, Any]:
        """The `EmojiReaction` object listed in a message's `reactions`."""
        return {
            "emoji_name": self.emoji_name,
            "emoji_code": self.emoji_code,
            "reaction_type": self.reaction_type,
            "user_id": self.user.id,
            "user": self.user.basic(),
        }


@dataclass
class Message:
    """A stored message, with each recipient's flags (`read`, `mentioned`, …)."""

    id: int
    sender: User
    type: str  # "private" or "stream"
    content: str
    timestamp: int
    recipient_id: int
    client: str = "API"
    stream: Stream | None = None
    topic: str = ""
    participants: tuple[User, ...] = ()
    flags: dict[int, set[str]] = field(default_factory=dict)
    reactions: list[Reaction] = field(default_factory=list)
    stored_at: float = field(default_factory=time.time)  # precise arrival, for latency benchmarks
    rendered: str = ""  # the HTML, rendered when the message was sent (as Zulip stores rendered_content)

    @property
    def is_private(self) -> bool:
        """True for a direct (private) message."""
        return self.type == "private"

    def participant_ids(self) -> frozenset[int]:
        """Everyone in a direct message conversation, the sender included."""
        return frozenset(user.id for user in self.participants)

    def to_api(self, *, apply_markdown: bool, viewer_id: int | None = None) -> dict[str, Any]:
        """The message object of GET /messages and of `message` events."""
        data: dict[str, Any] = {
            "id": self.id,
            "sender_id": self.sender.id,
            "sender_email": self.sender.email,
            "sender_full_name": self.sender.full_name,
            "sender_realm_str": REALM_STR,
            "avatar_url": avatar_url(self.sender.email),
            "client": self.client,
            "content": (self.rendered or render_markdown(self.content)) if apply_markdown else self.content,
            "content_type": "text/html" if apply_markdown else "text/x-markdown",
            "recipient_id": self.recipient_id,
            "is_me_message": self.content.startswith("/me "),
            "reactions": [reaction.to_api() for reaction in self.reactions],
            "submessages": [],
            "subject": self.topic,
            "topic_links": [],
            "timestamp": self.timestamp,
            "type": self.type,
        }
        if self.stream is not None:
            data["display_recipient"] = self.stream.name
            data["stream_id"] = self.stream.id
        else:
            users = sorted(self.participants, key=lambda user: user.id)
            data["display_recipient"] = [user.basic() for user in users]
        return data


def avatar_url(email: str) -> str:
    """The Gravatar URL Zulip gives users who never uploaded an avatar."""
    digest = hashlib.md5(email.lower().encode()).hexdigest()  # Gravatar hashes with MD5
    return f"https://secure.gravatar.com/avatar/{digest}?d=identicon&version=1"


def mention_flags(content: str, user: User, is_stream: bool) -> set[str]:
    """The flags a message's mentions give one user, as Zulip computes them."""
    flags: set[str] = set()
    for silent, name, user_id in MENTION_RE.findall(content):
        if silent:
            continue
        is_me = int(user_id) == user.id if user_id else name == user.full_name
        if is_me:
            flags.add("mentioned")
        elif is_stream and name in WILDCARDS:
            flags.add("wildcard_mentioned")
    return flags


MentionLookup = Callable[[str, "str | None"], "User | None"]
FENCE_RE = re.compile(r"^(```|~~~)\s*([\w+#.-]*)\s*$")


def render_markdown(text: str, find_mentioned: MentionLookup | None = None) -> str:
    """A small stand-in for Zulip's Markdown: fenced blocks, paragraphs and user mentions.

    As in Zulip, ```` ```quote ```` is a quotation (not code), a mention becomes a
    `user-mention` span only when it names a real user (`find_mentioned`; wildcards
    always), and other fences are code (`div.codehilite`).
    """
    rendered: list[str] = []
    paragraph: list[str] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        fence = FENCE_RE.match(lines[index].strip())
        if fence is None:
            paragraph.append(lines[index])
            index += 1
            continue
        rendered.extend(_paragraphs("\n".join(paragraph), find_mentioned))
        paragraph = []
        marker, language = fence.groups()
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == marker), len(lines))
        body = "\n".join(lines[index + 1:end])
        rendered.append(_fenced(language.lower(), body, find_mentioned))
        index = end + 1
    rendered.extend(_paragraphs("\n".join(paragraph), find_mentioned))
    return "\n".join(rendered) or "<p></p>"


def _fenced(language: str, body: str, find_mentioned: MentionLookup | None) -> str:
    if language == "quote":
        return "<blockquote>\n" + "\n".join(_paragraphs(body, find_mentioned)) + "\n</blockquote>"
    if language == "spoiler":
        return '<div class="spoiler-block"><div class="spoiler-header"></div><div class="spoiler-content">' + \
            "\n".join(_paragraphs(body, find_mentioned)) + "</div></div>"
    if language in ("math", "tex", "latex"):
        return f'<p><span class="katex-display">{html.escape(body)}</span></p>'
    attribute = f' data-code-language="{html.escape(language)}"' if language else ""
    return f'<div class="codehilite"{attribute}><pre><span></span><code>{html.escape(body)}\n</code></pre></div>'


def _paragraphs(text: str, find_mentioned: MentionLookup | None) -> list[str]:
    parts = [part for part in re.split(r"\n\s*\n", text) if part.strip()]
    return ["<p>" + _render_mentions(html.escape(part.strip("\n")).replace("\n", "<br>\n"), find_mentioned) + "</p>"
            for part in parts]


def _render_mentions(escaped: str, find_mentioned: MentionLookup | None) -> str:
    def replace(match: re.Match[str]) -> str:
        silent, name, user_id = match.groups()
        css = "user-mention silent" if silent else "user-mention"
        if html.unescape(name) in WILDCARDS:
            return f'<span class="{css}" data-user-id="*">@{name}</span>'
        user = find_mentioned(html.unescape(name), user_id) if find_mentioned is not None else None
        if find_mentioned is not None and user is None:
            return match.group(0)  # no such user: Zulip leaves the text as it is
        attribute = f' data-user-id="{user.id if user else user_id}"' if (user or user_id) else ""
        return f'<span class="{css}"{attribute}>@{name}</span>'

    return MENTION_RE.sub(replace, escaped)
