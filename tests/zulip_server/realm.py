"""The server's state: users, streams, messages and event queues, behind one lock."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .events import EventQueue, QueueGone
from .models import Message, Reaction, Stream, User, mention_flags, render_markdown
from .narrow import NarrowContext, Term, matches, mentions_stream

LARGER_THAN_MAX_MESSAGE_ID = 10_000_000_000_000_000

EMOJI_CODES = {
    "+1": "1f44d",
    "thumbs_up": "1f44d",
    "-1": "1f44e",
    "thumbs_down": "1f44e",
    "heart": "2764",
    "tada": "1f389",
    "smile": "1f604",
    "smiley": "1f603",
    "slight_smile": "1f642",
    "grinning": "1f600",
    "joy": "1f602",
    "wink": "1f609",
    "check": "2705",
    "check_mark": "2714",
    "white_check_mark": "2705",
    "x": "274c",
    "cross_mark": "274c",
    "eyes": "1f440",
    "rocket": "1f680",
    "star": "2b50",
    "fire": "1f525",
    "clap": "1f44f",
    "thinking": "1f914",
    "octopus": "1f419",
    "hourglass": "231b",
    "warning": "26a0",
    "question": "2753",
    "exclamation": "2757",
    "wave": "1f44b",
    "ok": "1f197",
    "robot": "1f916",
    "books": "1f4da",
    "book": "1f4d6",
    "sparkles": "2728",
    "muscle": "1f4aa",
    "100": "1f4af",
    "working_on_it": "1f6e0",
    "zulip": "zulip",
}


class ApiError(Exception):
    """A Zulip JSON error: `msg`, `code`, HTTP status and any extra fields."""

    def __init__(self, msg: str, code: str = "BAD_REQUEST", status: int = 400, **extra: Any):
        super().__init__(msg)
        self.msg, self.code, self.status, self.extra = msg, code, status, extra


@dataclass(frozen=True)
class Fetched:
    """The answer of GET /messages, before it is turned into JSON."""

    messages: list[Message]
    anchor: int
    found_anchor: bool
    found_oldest: bool
    found_newest: bool


class Realm:
    """All the data of one Zulip organization; every method is thread-safe."""

    def __init__(self, heartbeat_seconds: float, queue_timeout_seconds: float) -> None:
        self.lock = threading.RLock()
        self.heartbeat_seconds = heartbeat_seconds
        self.queue_timeout_seconds = queue_timeout_seconds
        self.users: dict[int, User] = {}
        self.users_by_email: dict[str, User] = {}
        self.users_by_key: dict[str, User] = {}
        self.streams: dict[int, Stream] = {}
        self.messages: list[Message] = []
        self.queues: dict[str, EventQueue] = {}
        self.storage: dict[int, dict[str, str]] = {}
        self.emoji_codes = dict(EMOJI_CODES)
        self._recipient_ids: dict[Any, int] = {}
        self._next_user_id = 8
        self._next_stream_id = 1
        self._next_message_id = 1

    # -- users and streams ------------------------------------------------------

    def add_user(self, email: str, full_name: str, *, bot: bool, api_key: str | None) -> User:
        """Create an account (the email must be new)."""
        with self.lock:
            if email.lower() in self.users_by_email:
                raise ValueError(f"user {email} already exists")
            user = User(self._next_user_id, email, api_key or secrets.token_hex(16), full_name, is_bot=bot)
            self._next_user_id += 1
            self.users[user.id] = user
            self.users_by_email[email.lower()] = user
            self.users_by_key[user.api_key] = user
            return user

    def rotate_api_key(self, user: User) -> User:
        """Give the account a new API key (as "Generate new API key" does); the old one gets 401 from now on."""
        with self.lock:
            current = self.users[user.id]
            rotated = dataclasses.replace(current, api_key=secrets.token_hex(16))
            del self.users_by_key[current.api_key]
            self.users[user.id] = rotated
            self.users_by_email[rotated.email.lower()] = rotated
            self.users_by_key[rotated.api_key] = rotated
            return rotated

    def find_user(self, key: str | int) -> User | None:
        """A user by id, numeric string or email (case-insensitive)."""
        with self.lock:
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                return self.users.get(int(key))
            return self.users_by_email.get(str(key).lower())

    def authenticate(self, email: str, api_key: str) -> User | None:
        """The user these credentials belong to, if they are right."""
        user = self.users_by_key.get(api_key)
        return user if user is not None and user.email.lower() == email.lower() else None

    def add_stream(self, name: str, *, description: str = "", invite_only: bool = False) -> Stream:
        """Create a stream, or return the one with that name."""
        with self.lock:
            existing = self.find_stream(name)
            if existing is not None:
                return existing
            stream = Stream(self._next_stream_id, name, description, invite_only, int(time.time()))
            self._next_stream_id += 1
            self.streams[stream.id] = stream
            return stream

    def find_stream(self, key: str | int) -> Stream | None:
        """A stream by id or by name (case-insensitive)."""
        with self.lock:
            if isinstance(key, int):
                return self.streams.get(key)
            return next((s for s in self.streams.values() if s.name.lower() == key.lower()), None)

    def subscribe(self, user: User, stream: Stream) -> bool:
        """Subscribe; False if the user already was subscribed."""
        with self.lock:
            if user.id in stream.subscribers:
                return False
            stream.subscribers.add(user.id)
        self._dispatch_to_user(user, "subscription", {"op": "add", "subscriptions": [stream.to_api()]})
        return True

    def unsubscribe(self, user: User, stream: Stream) -> bool:
        """Unsubscribe; False if the user was not subscribed."""
        with self.lock:
            if user.id not in stream.subscribers:
                return False
            stream.subscribers.discard(user.id)
        self._dispatch_to_user(user, "subscription", {"op": "remove", "subscriptions": [stream.to_api()]})
        return True

    def visible_streams(self, user: User) -> list[Stream]:
        """Public streams plus the private ones the user is subscribed to."""
        with self.lock:
            return [s for s in self.streams.values() if not s.invite_only or user.id in s.subscribers]

    # -- messages ---------------------------------------------------------------

    def send_private(self, sender: User, recipients: Iterable[User], content: str, client: str = "API") -> Message:
        """Store a direct message and deliver it to the participants' queues."""
        participants = {sender.id: sender, **{user.id: user for user in recipients}}
        users = tuple(sorted(participants.values(), key=lambda user: user.id))
        with self.lock:
            key = frozenset(participants)
            message = self._new_message(sender, "private", content, key, client)
            message.participants = users
            for user in users:
                message.flags[user.id] = self._initial_flags(message, user)
            self.messages.append(message)
        self._deliver(message)
        return message

    def send_stream(self, sender: User, stream: Stream, topic: str, content: str, client: str = "API") -> Message:
        """Store a stream message and deliver it to subscribers' queues."""
        with self.lock:
            message = self._new_message(sender, "stream", content, ("stream", stream.id), client)
            message.stream, message.topic = stream, topic
            for user_id in stream.subscribers | {sender.id}:
                message.flags[user_id] = self._initial_flags(message, self.users[user_id])
            if stream.first_message_id is None:
                stream.first_message_id = message.id
            self.messages.append(message)
        self._deliver(message)
        return message

    def _new_message(self, sender: User, kind: str, content: str, recipient_key: Any, client: str) -> Message:
        recipient_id = self._recipient_ids.setdefault(recipient_key, len(self._recipient_ids) + 1)
        message = Message(self._next_message_id, sender, kind, content, int(time.time()), recipient_id, client=client)
        message.rendered = render_markdown(content, self._mentioned_user)
        self._next_message_id += 1
        return message

    def _mentioned_user(self, name: str, user_id: str | None) -> User | None:
        """The user a mention names (`@**Name**` or `@**Name|id**`), as Zulip's Markdown looks it up."""
        if user_id is not None:
            user = self.users.get(int(user_id))
            return user if user is not None and user.full_name == name else None
        return next((user for user in self.users.values() if user.full_name.lower() == name.lower()), None)

    @staticmethod
    def _initial_flags(message: Message, user: User) -> set[str]:
        flags = mention_flags(message.content, user, is_stream=not message.is_private)
        if user.id == message.sender.id:
            flags.add("read")
        return flags

    def get_message(self, message_id: int, viewer: User) -> Message:
        """A message the viewer may see, else 400 'Invalid message(s)'."""
        with self.lock:
            index = message_id - 1
            if 0 <= index < len(self.messages):
                message = self.messages[index]
                if self.can_see(viewer, message):
                    return message
        raise ApiError("Invalid message(s)")

    def can_see(self, viewer: User, message: Message) -> bool:
        """Recipients see a message; anybody sees public-stream history."""
        if viewer.id in message.flags:
            return True
        return message.stream is not None and not message.stream.invite_only

    def update_flags(self, viewer: User, message_ids: list[int], flag: str, add: bool) -> list[int]:
        """POST /messages/flags: add or remove `read`/`starred` on the viewer's messages."""
        changed = []
        with self.lock:
            for message_id in message_ids:
                flags = self.get_message(message_id, viewer).flags.setdefault(viewer.id, set())
                if (flag in flags) != add:
                    (flags.add if add else flags.discard)(flag)
                    changed.append(message_id)
        return changed

    def fetch(
        self, viewer: User, terms: list[Term], anchor: str | int, num_before: int, num_after: int, include_anchor: bool = True
    ) -> Fetched:
        """GET /messages: messages around an anchor, with Zulip's found_* flags."""
        context = NarrowContext(viewer, self.find_user)
        history = mentions_stream(terms)
        with self.lock:
            ids = [
                m
                for m in self.messages
                if (viewer.id in m.flags or (history and self.can_see(viewer, m))) and matches(m, terms, context)
            ]
        anchor_id = self._resolve_anchor(viewer, ids, anchor)
        return _window(ids, anchor_id, num_before, num_after, include_anchor, anchor)

    @staticmethod
    def _resolve_anchor(viewer: User, matching: list[Message], anchor: str | int) -> int:
        if anchor == "newest":
            return LARGER_THAN_MAX_MESSAGE_ID
        if anchor == "oldest":
            return 0
        if anchor == "first_unread":
            unread = (m.id for m in matching if "read" not in m.flags.get(viewer.id, set()))
            return next(unread, LARGER_THAN_MAX_MESSAGE_ID)
        return int(anchor)

    # -- reactions --------------------------------------------------------------

    def add_reaction(self, user: User, message_id: int, emoji_name: str, emoji_code: str | None, reaction_type: str) -> None:
        """Add an emoji reaction (400 if unknown emoji or already there)."""
        with self.lock:
            message = self.get_message(message_id, user)
            code = emoji_code or self.emoji_codes.get(emoji_name)
            if code is None:
                raise ApiError(f"Emoji '{emoji_name}' does not exist")
            if self._find_reaction(message, user, emoji_name) is not None:
                raise ApiError("Reaction already exists.", "REACTION_ALREADY_EXISTS")
            reaction = Reaction(emoji_name, code, reaction_type, user)
            message.reactions.append(reaction)
        self._deliver_reaction(message, reaction, "add")

    def remove_reaction(self, user: User, message_id: int, emoji_name: str | None, emoji_code: str | None) -> None:
        """Remove the user's reaction (400 if there is none)."""
        with self.lock:
            message = self.get_message(message_id, user)
            reaction = self._find_reaction(message, user, emoji_name, emoji_code)
            if reaction is None:
                raise ApiError("Reaction doesn't exist.", "REACTION_DOES_NOT_EXIST")
            message.reactions.remove(reaction)
        self._deliver_reaction(message, reaction, "remove")

    @staticmethod
    def _find_reaction(message: Message, user: User, name: str | None, code: str | None = None) -> Reaction | None:
        for reaction in message.reactions:
            same_emoji = reaction.emoji_name == name or (code and reaction.emoji_code == code)
            if reaction.user.id == user.id and same_emoji:
                return reaction
        return None

    # -- event queues -----------------------------------------------------------

    def register(self, queue: EventQueue) -> EventQueue:
        """Keep a new event queue."""
        with self.lock:
            self._collect_idle_queues()
            self.queues[queue.id] = queue
        return queue

    def queue_for(self, user: User, queue_id: str) -> EventQueue:
        """The user's live queue, or QueueGone (also when it idled past the timeout)."""
        with self.lock:
            queue = self.queues.get(queue_id)
            if queue is None or queue.user_id != user.id:
                raise QueueGone(queue_id)
            if queue.expired or queue.is_idle_past(self.queue_timeout_seconds):
                self._drop_queue(queue)
                raise QueueGone(queue_id)
            return queue

    def delete_queue(self, user: User, queue_id: str) -> None:
        """DELETE /events."""
        self._drop_queue(self.queue_for(user, queue_id))

    def expire_queues(self, user: User | None = None) -> int:
        """Expire every queue (or one user's) now, as a server restart would."""
        with self.lock:
            doomed = [q for q in self.queues.values() if user is None or q.user_id == user.id]
            for queue in doomed:
                self._drop_queue(queue)
        return len(doomed)

    def _drop_queue(self, queue: EventQueue) -> None:
        with self.lock:
            self.queues.pop(queue.id, None)
        queue.expire()

    def _collect_idle_queues(self) -> None:
        now = time.monotonic()
        for queue in list(self.queues.values()):
            if queue.is_idle_past(self.queue_timeout_seconds, now):
                self._drop_queue(queue)

    def _live_queues(self) -> list[EventQueue]:
        with self.lock:
            self._collect_idle_queues()
            return list(self.queues.values())

    def _deliver(self, message: Message) -> None:
        with self.lock:
            deliveries = [
                (queue, self._message_event(queue, message))
                for queue in self._live_queues()
                if queue.wants("message") and self._queue_sees(queue, message)
            ]
        for queue, event in deliveries:
            queue.push(event)

    @staticmethod
    def _message_event(queue: EventQueue, message: Message) -> dict[str, Any]:
        flags = sorted(message.flags.get(queue.user_id, set()))
        payload = message.to_api(apply_markdown=queue.apply_markdown)
        return {"type": "message", "message": payload, "flags": flags}

    def _queue_sees(self, queue: EventQueue, message: Message) -> bool:
        viewer = self.users[queue.user_id]
        if viewer.id not in message.flags:
            stream = message.stream
            if not (queue.all_public_streams and stream is not None and not stream.invite_only):
                return False
        return matches(message, queue.narrow, NarrowContext(viewer, self.find_user))

    def _deliver_reaction(self, message: Message, reaction: Reaction, op: str) -> None:
        event = {"type": "reaction", "op": op, "message_id": message.id, **reaction.to_api()}
        for queue in self._live_queues():
            if queue.wants("reaction") and self.can_see(self.users[queue.user_id], message):
                queue.push(event)

    def _dispatch_to_user(self, user: User, event_type: str, event: dict[str, Any]) -> None:
        for queue in self._live_queues():
            if queue.user_id == user.id and queue.wants(event_type):
                queue.push({"type": event_type, **event})


def _window(
    matching: list[Message], anchor: int, num_before: int, num_after: int, include_anchor: bool, raw_anchor: str | int
) -> Fetched:
    """Zulip's limit_query_to_range + post_process_limited_query, on a sorted list."""
    earlier = [m for m in matching if m.id < anchor]
    before = earlier[-num_before:] if num_before else []
    start = anchor if include_anchor else anchor + 1
    after_all = [m for m in matching if m.id >= start]
    found_anchor = include_anchor and bool(after_all) and after_all[0].id == anchor
    after_limit = num_after + (1 if found_anchor else 0)
    after = after_all[:after_limit]
    found_oldest = raw_anchor == "oldest" or len(earlier) == len(before)
    found_newest = raw_anchor == "newest" or len(after_all) == len(after)
    if raw_anchor == "newest":
        found_anchor = False
    return Fetched(before + after, anchor, found_anchor, found_oldest, found_newest)
