"""Event queues: what POST /register creates and GET /events long-polls."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .narrow import Term

_queue_numbers = itertools.count(1)


class QueueGone(Exception):
    """The queue expired or never existed (400 BAD_EVENT_QUEUE_ID)."""


@dataclass
class EventQueue:
    """One client's event queue, with Zulip's ids, acknowledgement and idle timeout."""

    user_id: int
    event_types: frozenset[str] | None
    narrow: list[Term]
    all_public_streams: bool = False
    apply_markdown: bool = False
    client_gravatar: bool = False
    id: str = field(default_factory=lambda: f"{int(time.time())}:{next(_queue_numbers)}")
    last_access: float = field(default_factory=time.monotonic)
    expired: bool = False
    _events: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int = 0
    _pollers: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wants(self, event_type: str) -> bool:
        """True when the queue subscribed to this type of event."""
        return self.event_types is None or event_type in self.event_types

    def push(self, event: dict[str, Any]) -> None:
        """Append an event (it gets the next id) and wake a waiting poller."""
        with self._cond:
            if self.expired:
                return
            self._events.append({**event, "id": self._next_id})
            self._next_id += 1
            self._cond.notify_all()

    def is_idle_past(self, timeout: float, now: float | None = None) -> bool:
        """True when nobody polls the queue and it was last used over `timeout` ago."""
        now = time.monotonic() if now is None else now
        with self._cond:
            return self._pollers == 0 and now - self.last_access > timeout

    def expire(self) -> None:
        """Drop the queue now; a poller blocked on it answers BAD_EVENT_QUEUE_ID."""
        with self._cond:
            self.expired = True
            self._events.clear()
            self._cond.notify_all()

    def poll(self, last_event_id: int | None, *, block: bool, heartbeat: float) -> list[dict[str, Any]]:
        """Acknowledge up to `last_event_id`, then return newer events.

        Blocks until an event arrives; after `heartbeat` seconds with none, adds
        a heartbeat event (as Zulip's Tornado does) and returns it.
        """
        with self._cond:
            self._check_alive()
            if last_event_id is not None:
                self._events = [e for e in self._events if e["id"] > last_event_id]
            self._pollers += 1
            try:
                if block and not self._events:
                    self._cond.wait_for(lambda: self._events or self.expired, heartbeat)
                    self._check_alive()
                    if not self._events:
                        self.push({"type": "heartbeat"})
                return list(self._events)
            finally:
                self._pollers -= 1
                self.last_access = time.monotonic()

    def _check_alive(self) -> None:
        if self.expired:
            raise QueueGone(self.id)
