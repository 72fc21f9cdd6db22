"""The log shipper: rotate the app's JSON logs, gzip them, upload them to Drive, delete after Drive confirms.

Run it with ``python -m app.workers.log_shipper`` (under supervisor in production). Progress
lives in ``<log dir>/outgoing/``: the files themselves and an atomically replaced state file
with each upload's session, so SIGKILL at any moment loses and doubles nothing. SIGTERM
lets the file being uploaded finish, skips the rest of the pass and exits 0.
"""

from __future__ import annotations

import logging
import sys

from app.boot import boot
from app.db import db
from app.logship.shipper import LogShipper, NotConfigured
from app.loop import StopFlag, run_forever
from app.metrics.exposition import serve_worker_metrics
from app.metrics.registry import LOG_SHIP_LAST_SUCCESS
from app.settings import Settings
from app.workers.models import record_heartbeat

log = logging.getLogger(__name__)


class ShipperWorker:
    def __init__(self, settings: Settings, stop: StopFlag | None = None) -> None:
        self.stop = stop or StopFlag()
        self.shipper = LogShipper(settings, sleep=self._sleep, stopping=lambda: self.stop.stopping)

    def _sleep(self, seconds: float) -> None:
        self.stop.event.wait(seconds)

    def run_once(self) -> bool:
        report = self.shipper.run_once()
        record_heartbeat("log_shipper", {"shipped": len(report.shipped), "errors": report.errors[:5]})
        db.session.commit()
        if report.errors:
            raise RuntimeError("; ".join(report.errors))  # the loop backs off
        LOG_SHIP_LAST_SUCCESS.set_to_current_time()
        return bool(report.shipped)


def main() -> None:
    settings, app = boot("log_shipper")
    try:
        worker = ShipperWorker(settings)
    except NotConfigured as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    worker.stop.install()
    serve_worker_metrics("log shipper", settings.metrics_port_log_shipper)
    log.info("log shipper started (interval %.0f s)", settings.log_ship_interval_seconds)
    with app.app_context():
        run_forever(worker.run_once, settings.log_ship_interval_seconds, worker.stop)
    log.info("log shipper stopped")


if __name__ == "__main__":
    main()
