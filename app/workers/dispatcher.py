"""The outbox dispatcher worker: ``python -m app.workers.dispatcher`` (under supervisor in production).

It runs ``dispatcher_threads`` dispatchers (app/outbox/dispatcher.py), each with its own
database session and locks; several processes may run as well. Each handler comes from
its feature folder: chat replies (app/zulip/), ops alerts (app/alerts/), grades and sheet
rows (app/grading/), admin jobs (app/admin/), GitHub repositories and reviews (app/github/).
Without Zulip configured, replies and alerts stay in the outbox (the console chat reads the
replies itself).

A dispatcher waits on PostgreSQL's NOTIFY (app/outbox/wakeup.py) when idle, so a reply
leaves within moments of its commit. A thread that ends while the process lives is
logged and started again; the heartbeat tells ``/health`` how many are alive and what a
paused handler is stuck on (a refused key, Zulip down).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from app.admin.chat import AdminJobs
from app.alerts.delivery import AlertSender
from app.boot import boot
from app.db import db, is_postgresql
from app.github.delivery import github_handlers
from app.grading.delivery import grading_handlers
from app.lessons.catalog import Catalog
from app.loop import StopFlag, run_forever
from app.metrics.exposition import serve_worker_metrics
from app.outbox.dispatcher import Dispatcher, Handler
from app.outbox.wakeup import OutboxListener
from app.settings import Settings
from app.workers.models import record_heartbeat
from app.zulip.api import NotConfigured
from app.zulip.connect import shared_api
from app.zulip.delivery import ZulipSender

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2.0
HELD_ELSEWHERE_WAIT = 0.05  # seconds an idle dispatcher waits before asking again for due items others hold


def outbox_handlers(settings: Settings, catalog: Catalog, stopping: Callable[[], bool] = lambda: False,
                    *, zulip: bool = True) -> list[Handler]:
    """Every effect kind's handler; the Zulip ones only when Zulip is configured (and wanted), the GitHub
    ones only when the GitHub App is."""
    handlers: list[Handler] = [*grading_handlers(settings, catalog), AdminJobs(settings, catalog)]
    if settings.has_github:
        handlers += github_handlers(settings)
    if zulip and settings.zulip_site:
        api = shared_api(settings, stopping)  # the process's one client, stopping with it
        handlers += [ZulipSender(api, settings), AlertSender(api, settings)]
    return handlers


class DispatcherThreads:
    """The process's dispatchers, one thread each; the main thread keeps them running and beats for them."""

    def __init__(self, app: Flask, settings: Settings, handlers: list[Handler], stop: StopFlag) -> None:
        self.app, self.settings, self.handlers, self.stop = app, settings, handlers, stop
        self.count = settings.dispatcher_threads if is_postgresql() else 1
        self.threads: dict[int, threading.Thread] = {}
        self.dispatchers: dict[int, Dispatcher] = {}
        self.errors: dict[int, str] = {}
        self.restarts = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        for number in range(self.count):
            self._start(number)

    def _start(self, number: int) -> None:
        thread = threading.Thread(target=self._run, args=(number,), name=f"dispatcher-{number}", daemon=True)
        self.threads[number] = thread
        thread.start()

    def _run(self, number: int) -> None:
        dispatcher = Dispatcher(self.handlers, self.stop)
        self.dispatchers[number] = dispatcher
        listener: OutboxListener | None = None
        try:
            with self.app.app_context():
                listener = OutboxListener(db.engine) if is_postgresql() else None
                run_forever(dispatcher.run_once, self.settings.poll_interval_seconds, self.stop,
                            lambda seconds: self._idle(dispatcher, listener, seconds))
        except BaseException as error:  # a thread's last word; the main thread starts it again
            with self.lock:
                self.errors[number] = f"dispatcher stopped: {error.__class__.__name__}: {error}"[:300]
            log.exception("dispatcher %d stopped unexpectedly; starting it again", number)
        finally:
            dispatcher.close()
            if listener is not None:
                listener.close()

    def _idle(self, dispatcher: Dispatcher, listener: OutboxListener | None, seconds: float) -> None:
        """Wait for a commit's NOTIFY, the next item's time, or the stop flag, whichever comes first.

        Items due now that this pass could not take are held by another dispatcher (a batch
        holds its queues while it sends): wait a moment rather than ask again at once.
        """
        due_in = dispatcher.next_due_in()
        wait = seconds if due_in is None else min(max(due_in, HELD_ELSEWHERE_WAIT), seconds)
        if listener is not None:
            listener.wait(wait, lambda: self.stop.stopping)
        else:
            self.stop.wait(min(wait, 0.5))

    def beat(self) -> bool:
        """Start again any thread that ended, and write the heartbeat; never 'did work' (the loop waits between beats)."""
        if not self.stop.stopping:  # threads that end with the process are not dead ones
            for number, thread in list(self.threads.items()):
                if not thread.is_alive():
                    log.error("dispatcher %d was not running; starting it again", number)
                    self.restarts += 1
                    self._start(number)
        record_heartbeat("dispatcher", self.status())
        db.session.commit()
        return False

    def status(self) -> dict[str, Any]:
        """For the heartbeat: ok, or the errors of paused handlers and ended threads."""
        with self.lock:
            errors = set(self.errors.values())
            self.errors.clear()
        for dispatcher in list(self.dispatchers.values()):
            errors.update(f"{name}: {reason}" for name, reason in dispatcher.errors().items())
        alive = sum(1 for thread in self.threads.values() if thread.is_alive())
        return {"status": "error" if errors else "ok", "errors": sorted(errors), "alive": alive,
                "threads": len(self.threads), "restarts": self.restarts}

    def join(self, timeout: float) -> None:
        for thread in self.threads.values():
            thread.join(timeout=timeout)


def main() -> None:
    settings, app = boot("dispatcher")
    stop = StopFlag()
    stop.install()
    serve_worker_metrics("dispatcher", settings.metrics_port_dispatcher, settings.worker_index)
    with app.app_context():
        try:
            handlers = outbox_handlers(settings, app.extensions["lessonbot.catalog"], lambda: stop.stopping)
        except NotConfigured as error:
            print(error, file=sys.stderr)
            sys.exit(2)
        if not settings.zulip_site:
            log.info("Zulip is not configured: chat replies and alerts stay in the outbox")
        threads = DispatcherThreads(app, settings, handlers, stop)
        log.info("dispatcher started: %d thread(s) for %s", threads.count, ", ".join(h.name for h in handlers))
        threads.start()
        run_forever(threads.beat, HEARTBEAT_SECONDS, stop)
    threads.join(timeout=30)
    log.info("dispatcher stopped")


if __name__ == "__main__":
    main()
