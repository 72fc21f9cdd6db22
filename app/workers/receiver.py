"""The Zulip receiver worker: ``python -m app.workers.receiver`` (under supervisor in production).

See :mod:`app.zulip.receiver` for what it guarantees. Only one receiver per bot is active
(a PostgreSQL advisory lock); a second one waits. SIGTERM ends it promptly. A wrong API
key is one log line and an error in its heartbeat (``/health``), and it carries on by
itself once the key is fixed.
"""

from __future__ import annotations

import logging
import sys
import time

from app.boot import boot
from app.db import db
from app.loop import StopFlag, run_forever
from app.metrics.exposition import serve_worker_metrics
from app.workers.models import record_heartbeat
from app.zulip.api import NotConfigured
from app.zulip.connect import shared_api
from app.zulip.receiver import CoreClient, Receiver

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0


def main() -> None:
    settings, app = boot("receiver")
    stop = StopFlag()
    stop.install()
    serve_worker_metrics("receiver", settings.metrics_port_receiver)
    with app.app_context():
        try:
            api = shared_api(settings, lambda: stop.stopping)
        except NotConfigured as error:
            print(error, file=sys.stderr)
            sys.exit(2)
        core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
        receiver = Receiver(api, api, core, stop, default_language=settings.default_language)
        if receiver.wait_for_lock():
            receiver.load_progress()
            log.info("receiver started for %s (last message id %s)", receiver.bot_email, receiver.last_id)
            run_forever(Beating(receiver).run_once, 0.0, stop)  # each pass is a long-poll: no idle wait
        receiver.close()
    log.info("receiver stopped")


class Beating:
    """The receiver's pass, with a heartbeat every few seconds and whenever its error changes."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.beat_at = float("-inf")  # never: time.monotonic() counts from boot, and may be small
        self.reported: str | None = None

    def run_once(self) -> bool:
        did_work = self.receiver.run_once()
        if self.receiver.last_error != self.reported or time.monotonic() - self.beat_at > HEARTBEAT_SECONDS:
            self.beat_at, self.reported = time.monotonic(), self.receiver.last_error
            heartbeat(self.receiver)
        return did_work


def heartbeat(receiver: Receiver) -> None:
    """For /health: alive, and ok or the error the receiver is stuck on (a bad key, Zulip down)."""
    try:
        record_heartbeat("receiver", {"status": "error" if receiver.last_error else "ok", "error": receiver.last_error,
                                      "last_message_id": receiver.last_id})
        db.session.commit()
    except Exception as error:  # the database may be away for a moment; the next beat tries again
        db.session.rollback()
        log.warning("receiver heartbeat not recorded: %s", error.__class__.__name__)


if __name__ == "__main__":
    main()
