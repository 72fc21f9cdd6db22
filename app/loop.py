"""The one worker loop, back-off and advisory-lock wait that every worker and the outbox share.

``main()`` of a worker builds it, installs SIGTERM/SIGINT handlers that only set a stop
flag (:class:`StopFlag`), and calls :func:`run_forever` with its ``run_once() -> bool``.
When a pass found no work the loop waits (a little jittered, so workers started together
spread out) on the stop event, so a stop request ends the wait at once and a pass in
progress is always finished. A pass that raises is logged and backed off, never a crash
loop; inside a pass, :func:`isolated` keeps one bad item from stopping the others.

This module sits below every feature folder (a feature never imports ``app.workers``):
the receiver, the poller, the outbox dispatcher and the log shipper all loop here, and
``tests/test_layering.py`` checks that no other module writes its own back-off or lock wait.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from tenacity import wait_exponential_jitter

log = logging.getLogger(__name__)
IDLE_JITTER = 0.1  # an idle wait is up to 10 % longer, so workers started together drift apart
LOCK_RETRY_SECONDS = 1.0
T = TypeVar("T")


class StopFlag:
    def __init__(self) -> None:
        self.event = threading.Event()

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("got signal %s: finishing the current pass, then stopping", signal.Signals(signum).name)
        self.event.set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, ending at once on a stop request; True if stopping."""
        return self.event.wait(max(seconds, 0.0))


Wait = Callable[[float], object]


def run_forever(run_once: Callable[[], bool], idle_seconds: float, stop: StopFlag,
                idle_wait: Wait | None = None) -> None:
    """Loop ``run_once`` until stopped; wait ``idle_seconds`` (jittered) after a pass that did nothing.

    ``idle_wait`` replaces the plain wait on the stop flag (the dispatcher wakes on NOTIFY).
    A pass that raises backs off by :func:`backoff` instead of crash-looping.
    """
    wait = idle_wait or stop.wait
    errors = 0
    while not stop.stopping:
        try:
            did_work = run_once()
            errors = 0
        except Exception:
            errors += 1
            delay = backoff(errors)
            log.exception("pass failed (%d in a row); retrying in %.1f s", errors, delay)
            stop.wait(delay)
            continue
        if not did_work:
            wait(idle_seconds * random.uniform(1.0, 1.0 + IDLE_JITTER))


def isolated(what: str, work: Callable[[], T], on_error: Callable[[Exception], None]) -> T | None:
    """Run one item's ``work``; an exception is logged with ``what`` and handed to ``on_error`` (which
    rolls back and reschedules the item), and the caller goes on with the next item. None then."""
    try:
        return work()
    except Exception as error:
        log.exception("%s failed; rescheduled", what)
        on_error(error)
        return None


class _Attempt:
    """The one field of tenacity's retry state that its wait strategies read."""

    def __init__(self, number: int) -> None:
        self.attempt_number = number


def backoff(attempt: int, *, initial: float = 1.0, maximum: float = 60.0, jitter: float = 1.0,
            at_least: float | None = None, spread: bool = False) -> float:
    """Seconds before retry ``attempt`` (1, 2, …): ``initial`` doubling up to ``maximum``, plus up to
    ``jitter`` seconds at random (tenacity's strategy); never less than ``at_least`` (a server's Retry-After).

    With ``spread``, the first attempt waits a uniformly random part of ``initial`` instead: items that
    start together (10 000 GitHub runs, the end of a rate-limit pause) fall due over the whole interval.
    """
    if spread and attempt <= 1:
        return max(random.uniform(0.0, initial), at_least or 0.0)
    strategy = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)
    return max(float(strategy(_Attempt(max(attempt, 1)))), at_least or 0.0)  # type: ignore[arg-type]


# --- advisory locks ---------------------------------------------------------------------------


def try_advisory_lock(connection: Connection, key: tuple[int, int]) -> bool:
    """Take the session-level advisory lock ``key`` on ``connection`` if it is free; True if taken."""
    return bool(connection.scalar(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": key[0], "k": key[1]}))


def advisory_unlock(connection: Connection, key: tuple[int, int]) -> None:
    connection.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), {"c": key[0], "k": key[1]})


def try_advisory_lock_clause(namespace: Any, key: Any) -> sa.ColumnElement[bool]:
    """:func:`try_advisory_lock` as an SQL expression, for a statement that locks the queues of the rows it selects."""
    return sa.func.pg_try_advisory_lock(namespace, key)


def advisory_unlock_all(connection: Connection) -> None:
    """Give back every session-level advisory lock ``connection`` holds."""
    connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))


def wait_for_advisory_lock(connection: Connection, key: tuple[int, int], stop: StopFlag, what: str) -> bool:
    """Hold ``key`` for the life of ``connection``, waiting while another process has it; False if stopped first.

    The lock belongs to the database session: it goes when the connection closes (or the
    process dies), so a waiting process takes over at once.
    """
    announced = False
    while not stop.stopping:
        if try_advisory_lock(connection, key):
            log.info("%s: lock taken", what)
            return True
        if not announced:
            log.info("%s: another process holds the lock; standing by", what)
            announced = True
        stop.wait(LOCK_RETRY_SECONDS)
    return False
