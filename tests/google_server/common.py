"""Small helpers shared by the fake services: call context, times, paging, ids."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .discovery import MatchedCall
from .errors import invalid_argument
from .faults import Clock
from .httpd import Request

T = TypeVar("T")


@dataclass
class Identity:
    """Who is calling: the access token's account, OAuth client and project."""

    email: str
    user_id: str
    client_id: str
    project_id: str
    scopes: frozenset[str]


@dataclass
class Call:
    """Everything a service method needs to answer one API call."""

    request: Request
    matched: MatchedCall
    identity: Identity
    body: Any = None

    @property
    def path(self) -> dict[str, str]:
        return self.matched.path_params

    @property
    def query(self) -> dict[str, Any]:
        return self.matched.query

    @property
    def api(self) -> str:
        return self.matched.api


def rfc3339(seconds: float) -> str:
    """A timestamp in Google's format: ``2026-01-02T03:04:05.678Z``."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Ids:
    """Thread-safe id generator with a per-kind prefix and counter."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def numeric(self, base: int = 700_000_000_000) -> str:
        """A numeric id like Classroom's (``700000000001``)."""
        with self._lock:
            return str(base + next(self._counter))

    def opaque(self, prefix: str) -> str:
        """An opaque id like Drive's (``1Fk…``)."""
        with self._lock:
            number = next(self._counter)
        token = base64.urlsafe_b64encode(f"{prefix}:{number:08d}".encode()).decode().rstrip("=")
        return f"1{token}"


def paginate(
    api: str, items: Sequence[T], page_size: int | None, page_token: str | None, default: int, maximum: int
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the token of the next page (None on the last)."""
    size = min(page_size or default, maximum)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode() + b"==").decode().split(":")[1])
        except (ValueError, IndexError):
            raise invalid_argument(api, "Invalid page token.") from None
    end = start + size
    next_token = None
    if end < len(items):
        next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode().rstrip("=")
    return list(items[start:end]), next_token


def now_string(clock: Clock) -> str:
    """The clock's current time in RFC 3339."""
    return rfc3339(clock.now())
