"""Fault injection, configured at runtime from Python.

A fault matches calls by method id (``"sheets.spreadsheets.values.append"``),
by API (``"drive"``) or by a glob (``"classroom.courses.courseWork.*"``). OAuth
endpoints are ``"oauth.token"``, ``"oauth.authorize"``, ``"oauth.userinfo"``,
``"oauth.revoke"``; a resumable-upload chunk is ``"drive.upload.chunk"``.

Examples::

    gs.faults.add("sheets", FaultKind.RESOURCE_EXHAUSTED, times=2, retry_after=1)
    gs.faults.add("drive.upload.chunk", FaultKind.DROP_AFTER, times=1)
    gs.faults.storm("classroom", percent=50, seconds=5)
"""

from __future__ import annotations

import enum
import fnmatch
import random
import threading
import time
from dataclasses import dataclass, field

from . import errors
from .errors import ApiError


class Clock:
    """Wall-clock time that tests can move forward (token expiry, quota minutes)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, including any :meth:`advance`."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward."""
        with self._lock:
            self._offset += seconds


class FaultKind(enum.Enum):
    """What an injected fault does to a matching call."""

    RESOURCE_EXHAUSTED = "429"  # 429 RESOURCE_EXHAUSTED with Retry-After
    RATE_LIMIT_EXCEEDED = "403-rateLimitExceeded"
    USER_RATE_LIMIT_EXCEEDED = "403-userRateLimitExceeded"
    SERVER_ERROR = "5xx"  # status from Fault.status (default 503)
    DROP = "drop"  # close the socket before handling, no response
    DROP_AFTER = "drop-after"  # handle the call (state changes!), then close without response
    DELAY = "delay"  # sleep Fault.delay seconds, then handle normally


@dataclass
class Fault:
    """One configured fault; ``hits`` counts the calls it affected."""

    match: str
    kind: FaultKind
    times: int | None = None
    probability: float = 1.0
    until: float | None = None
    status: int = 503
    retry_after: float | None = 1.0
    delay: float = 0.0
    hits: int = 0
    seen: int = 0

    def matches(self, call_id: str) -> bool:
        """True if ``call_id`` is selected by this fault's pattern."""
        pattern = self.match
        return call_id == pattern or call_id.startswith(pattern + ".") or fnmatch.fnmatchcase(call_id, pattern)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def error(self, api: str) -> ApiError:
        """The error response for the error kinds."""
        if self.kind is FaultKind.RESOURCE_EXHAUSTED:
            return errors.quota_exhausted(
                api, f"{api}.googleapis.com/default_requests", "DefaultRequestsPerMinutePerUser", self.retry_after
            )
        if self.kind is FaultKind.RATE_LIMIT_EXCEEDED:
            return errors.rate_limited_403("rateLimitExceeded")
        if self.kind is FaultKind.USER_RATE_LIMIT_EXCEEDED:
            return errors.rate_limited_403("userRateLimitExceeded")
        return errors.server_error(self.status)


@dataclass
class FaultDecision:
    """What the server should do with one call."""

    fault: Fault | None = None

    @property
    def kind(self) -> FaultKind | None:
        return self.fault.kind if self.fault else None


@dataclass
class Faults:
    """The set of active faults. Thread-safe."""

    clock: Clock
    seed: int | None = None
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(
        self,
        match: str,
        kind: FaultKind = FaultKind.SERVER_ERROR,
        *,
        times: int | None = 1,
        probability: float = 1.0,
        seconds: float | None = None,
        status: int = 503,
        retry_after: float | None = 1.0,
        delay: float = 0.0,
    ) -> Fault:
        """Inject ``kind`` into calls matching ``match``.

        ``times`` bounds how many calls fail (None = unlimited), ``probability``
        makes each matching call fail with that chance, ``seconds`` ends the fault
        after that long on the server clock.
        """
        until = None if seconds is None else self.clock.now() + seconds
        fault = Fault(match, kind, times, probability, until, status, retry_after, min(delay, 30.0))
        with self._lock:
            self._faults.append(fault)
        return fault

    def storm(
        self,
        match: str,
        *,
        percent: float = 50.0,
        seconds: float = 10.0,
        kind: FaultKind = FaultKind.RESOURCE_EXHAUSTED,
        status: int = 503,
    ) -> Fault:
        """A quota storm: ``percent`` of matching calls fail for ``seconds``."""
        return self.add(match, kind, times=None, probability=percent / 100.0, seconds=seconds, status=status)

    def remove(self, fault: Fault) -> None:
        """Stop one fault."""
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        """Stop every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        """The faults still in force."""
        with self._lock:
            return [fault for fault in self._faults if not self._expired(fault)]

    def _expired(self, fault: Fault) -> bool:
        return fault.exhausted or (fault.until is not None and self.clock.now() >= fault.until)

    def decide(self, call_id: str) -> FaultDecision:
        """Pick the first active fault that fires for this call (counting the hit)."""
        with self._lock:
            for fault in self._faults:
                if self._expired(fault) or not fault.matches(call_id):
                    continue
                fault.seen += 1
                if self._random.random() < fault.probability:
                    fault.hits += 1
                    return FaultDecision(fault)
        return FaultDecision()
