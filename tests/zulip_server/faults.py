"""Fault injection and per-user rate limiting for the Zulip test server."""

from __future__ import annotations

import fnmatch
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["error", "drop", "delay", "rate_limit"]


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    `error`: answer `status` (5xx) instead of the real answer; `drop`: close the
    connection without any answer; `delay`: wait `seconds`, then answer normally;
    `rate_limit`: Zulip's own 429 (RATE_LIMIT_HIT, `retry-after` = `seconds`).
    With `after=True` an error or drop happens *after* the request took effect
    (a message is stored, yet the client never learns it), which is what makes a
    client's retry double an effect.
    """

    kind: FaultKind
    status: int = 502
    seconds: float = 0.0
    after: bool = False

    @classmethod
    def error(cls, status: int = 502, *, after: bool = False) -> Fault:
        """An HTTP error answer (by default 502 Bad Gateway, as nginx gives)."""
        return cls("error", status=status, after=after)

    @classmethod
    def drop(cls, *, after: bool = False) -> Fault:
        """Close the socket without a response."""
        return cls("drop", after=after)

    @classmethod
    def rate_limited(cls, retry_after: float) -> Fault:
        """A 429 RATE_LIMIT_HIT as Zulip sends it, asking the client to wait `retry_after` seconds."""
        return cls("rate_limit", status=429, seconds=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds`."""
        return cls("delay", seconds=seconds)


ScriptItem = Fault | int | str | None


@dataclass
class InjectedFault:
    """A record of one fault that was applied to one request."""

    method: str
    path: str
    fault: Fault
    at: float


@dataclass
class _Rule:
    endpoint: str | None
    fault: Fault
    fraction: float = 1.0
    script: deque[Fault | None] | None = None

    def applies_to(self, method: str, path: str) -> bool:
        return endpoint_matches(self.endpoint, method, path)


def endpoint_matches(endpoint: str | None, method: str, path: str) -> bool:
    """Match `"POST /messages"`, `"/messages/*/reactions"` or None (everything).

    Paths are given without the `/api/v1` prefix; shell wildcards are allowed.
    """
    if endpoint is None:
        return True
    wanted_method, _, wanted_path = endpoint.rpartition(" ")
    if wanted_method and wanted_method.upper() != method.upper():
        return False
    short = path.removeprefix("/api/v1")
    return fnmatch.fnmatchcase(short, wanted_path) or fnmatch.fnmatchcase(path, wanted_path)


def _as_fault(item: ScriptItem) -> Fault | None:
    if item is None or isinstance(item, Fault):
        return item
    if isinstance(item, int):
        return Fault.error(item)
    if item == "drop":
        return Fault.drop()
    if item == "ok":
        return None
    raise ValueError(f"unknown fault {item!r}: use a Fault, a status code, 'drop' or 'ok'/None")


class Faults:
    """Runtime-configurable faults, consulted once per request (thread-safe)."""

    def __init__(self, seed: int | None = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)
        self.injected: list[InjectedFault] = []

    def script(self, items: Iterable[ScriptItem], endpoint: str | None = None) -> None:
        """Answer the next matching requests in order: e.g. `[502, "drop", None, 503]`.

        Items are a `Fault`, a status code, `"drop"`, or None/`"ok"` for a normal answer.
        """
        steps = deque(_as_fault(item) for item in items)
        with self._lock:
            self._rules.append(_Rule(endpoint, Fault.error(), script=steps))

    def fail_next(self, count: int = 1, status: int = 502, endpoint: str | None = None) -> None:
        """Answer the next `count` matching requests with `status`."""
        self.script([Fault.error(status)] * count, endpoint)

    def drop_next(self, count: int = 1, endpoint: str | None = None, *, after: bool = False) -> None:
        """Close the connection of the next `count` matching requests without an answer."""
        self.script([Fault.drop(after=after)] * count, endpoint)

    def set_error_rate(self, fraction: float, status: int = 503, endpoint: str | None = None) -> None:
        """Answer a random `fraction` (0..1) of matching requests with `status`."""
        self._add_rate(Fault.error(status), fraction, endpoint)

    def set_rate_limited_rate(self, fraction: float, retry_after: float, endpoint: str | None = None) -> None:
        """Answer a random `fraction` of matching requests with Zulip's 429 asking for `retry_after` s."""
        self._add_rate(Fault.rate_limited(retry_after), fraction, endpoint)

    def set_drop_rate(self, fraction: float, endpoint: str | None = None) -> None:
        """Drop the connection of a random `fraction` of matching requests."""
        self._add_rate(Fault.drop(), fraction, endpoint)

    def set_delay(self, seconds: float, endpoint: str | None = None, fraction: float = 1.0) -> None:
        """Delay (a `fraction` of) matching requests by `seconds` before answering."""
        self._add_rate(Fault.delay(seconds), fraction, endpoint)

    def clear(self) -> None:
        """Remove every configured fault (the record in `injected` is kept)."""
        with self._lock:
            self._rules.clear()

    def count(self, kind: FaultKind | None = None) -> int:
        """How many faults (of one kind) were applied so far."""
        with self._lock:
            return sum(1 for item in self.injected if kind is None or item.fault.kind == kind)

    def _add_rate(self, fault: Fault, fraction: float, endpoint: str | None) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within 0..1")
        with self._lock:
            self._rules.append(_Rule(endpoint, fault, fraction=fraction))

    def decide(self, method: str, path: str) -> list[Fault]:
        """The faults for one request: delays first, then at most one error or drop."""
        with self._lock:
            chosen = [fault for rule in self._rules if (fault := self._pick(rule, method, path))]
            self._rules = [rule for rule in self._rules if rule.script is None or rule.script]
            delays = [fault for fault in chosen if fault.kind == "delay"]
            final = [fault for fault in chosen if fault.kind != "delay"][:1]
            now = time.time()
            for fault in delays + final:
                self.injected.append(InjectedFault(method, path, fault, now))
            return delays + final

    def _pick(self, rule: _Rule, method: str, path: str) -> Fault | None:
        if not rule.applies_to(method, path):
            return None
        if rule.script is not None:
            return rule.script.popleft() if rule.script else None
        if rule.fraction >= 1.0 or self._random.random() < rule.fraction:
            return rule.fault
        return None


@dataclass
class RateLimitResult:
    """The outcome of one rate-limit check, with what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    secs_to_freedom: float

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* headers, computed as Zulip's RateLimitMiddleware does."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(int(time.time() + self.secs_to_freedom)),
        }


@dataclass
class RateLimiter:
    """Sliding-window limit per user: at most `max_requests` in any `per_seconds`."""

    max_requests: int
    per_seconds: float
    _history: dict[int, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, user_id: int, now: float | None = None) -> RateLimitResult:
        """Count one request by `user_id`, unless the limit is already reached."""
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._history.setdefault(user_id, deque())
            while window and window[0] <= now - self.per_seconds:
                window.popleft()
            allowed = len(window) < self.max_requests
            if allowed:
                window.append(now)
            remaining = self.max_requests - len(window)
            # Like Zulip's secs_to_freedom: until the oldest counted request leaves.
            wait = window[0] + self.per_seconds - now if window else 0.0
            return RateLimitResult(allowed, self.max_requests, remaining, max(0.0, wait))

    def reset(self) -> None:
        """Forget every user's history."""
        with self._lock:
            self._history.clear()


def retry_after_header(seconds: float) -> str:
    """Retry-After as Zulip sends it: the seconds until a request is allowed again."""
    return str(math.ceil(seconds * 1000) / 1000)
