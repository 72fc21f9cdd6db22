"""The worker loop shared by the poller and, later, the receiver and the log shipper.

``main()`` builds the worker, installs SIGTERM/SIGINT handlers that only set a stop flag,
and loops ``run_once()``; when a pass found no work it waits on the stop event, so a
stop request ends the wait at once and a pass in progress is always finished.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from tenacity import wait_exponential_jitter

log = logging.getLogger(__name__)


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


def run_forever(run_once: Callable[[], bool], interval: float, stop: StopFlag,
                on_error_wait: Callable[[int], float]) -> None:
    """Loop until stopped; an error in a whole pass backs off instead of crash-looping."""
    errors = 0
    while not stop.stopping:
        try:
            did_work = run_once()
            errors = 0
        except Exception:
            errors += 1
            delay = on_error_wait(errors)
            log.exception("pass failed (%d in a row); retrying in %.1f s", errors, delay)
            stop.event.wait(delay)
            continue
        if not did_work:
            stop.event.wait(interval)


class _Attempt:
    """The one field of tenacity's retry state that its wait strategies read."""

    def __init__(self, number: int) -> None:
        self.attempt_number = number


def backoff(attempt: int, *, initial: float = 1.0, maximum: float = 60.0, jitter: float = 1.0) -> float:
    """Capped exponential backoff with jitter, by tenacity's strategy: seconds before retry ``attempt``."""
    strategy = wait_exponential_jitter(initial=initial, max=maximum, jitter=jitter)
    return float(strategy(_Attempt(attempt)))  # type: ignore[arg-type]
