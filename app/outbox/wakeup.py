"""Waking the outbox dispatcher when an item is committed: PostgreSQL LISTEN/NOTIFY.

A trigger on the outbox (migration 0002) notifies ``lessonbot_outbox`` when a
transaction that queued something commits; the dispatcher waits on that instead of
sleeping, so a reply leaves within moments of its commit.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

CHANNEL = "lessonbot_outbox"


class OutboxListener:
    def __init__(self, engine: Engine) -> None:
        self.connection = engine.raw_connection()
        raw: Any = self.connection.driver_connection
        self.raw = raw
        raw.set_session(autocommit=True)
        cursor = raw.cursor()
        cursor.execute(f"LISTEN {CHANNEL}")
        cursor.close()

    def wait(self, timeout: float, stopping: Callable[[], bool]) -> bool:
        """Wait up to ``timeout`` s for a notification; True if one came. Checks ``stopping()`` often."""
        raw = self.raw
        deadline = time.monotonic() + timeout
        while not stopping():
            raw.poll()
            if raw.notifies:
                raw.notifies.clear()
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([raw], [], [], min(left, 0.25))
        return False

    def close(self) -> None:
        self.connection.close()
