"""`MessageListener`: a client's `call_on_each_message` in a thread that always stops.

`zulip.Client.call_on_each_message` never returns by itself; it re-raises what
its callback raises. The listener uses that: on `stop()` it sends the listening
user a direct message to itself (server-side), and its callback raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import zulip

from .models import User
from .server import ZulipTestServer

STOP_CONTENT = "\u2063stop-listening\u2063"  # invisible separators: no student types this


class _Stopped(Exception):
    """Ends the listening loop."""


class MessageListener:
    """Collects the messages a user's client receives; `with MessageListener(zs, bot) as l:`."""

    def __init__(
        self,
        zs: ZulipTestServer,
        user: User,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        client: zulip.Client | None = None,
    ) -> None:
        self.zs, self.user = zs, user
        self.client = client or zs.client(user)
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._on_message = on_message
        self._thread = threading.Thread(target=self._run, name=f"listener-{user.email}", daemon=True)

    def start(self) -> Self:
        """Start listening and wait until the event queue is registered."""
        known = set(self.zs.queue_ids(self.user))
        self._thread.start()
        self.zs.wait_for(lambda: set(self.zs.queue_ids(self.user)) - known, timeout=10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Make the loop end, and wait for it."""
        if self._thread.is_alive():
            self.zs.send_direct(self.user, [self.user], STOP_CONTENT)
            self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the listener of {self.user.email} did not stop")

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` messages were received; return them."""
        self.zs.wait_for(lambda: len(self.messages) >= count or self.error, timeout=timeout)
        if self.error is not None:
            raise self.error
        return list(self.messages)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self.client.call_on_each_message(self._receive)
        except _Stopped:
            pass
        except BaseException as error:  # reported by wait_for_count, never lost in the thread
            self.error = error

    def _receive(self, message: dict[str, Any]) -> None:
        if message["content"] == STOP_CONTENT and message["sender_id"] == self.user.id:
            raise _Stopped
        self.messages.append(message)
        if self._on_message is not None:
            self._on_message(message)
