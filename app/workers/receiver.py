"""The Zulip receiver worker: ``python -m app.workers.receiver`` (under supervisor in production).

See :mod:`app.zulip.receiver` for what it guarantees. Only one receiver per bot is active
(a PostgreSQL advisory lock); a second one waits. SIGTERM ends it promptly.
"""

from __future__ import annotations

import logging
import sys

from app.boot import boot
from app.workers.base import StopFlag
from app.zulip.api import NotConfigured
from app.zulip.connect import connect_when_reachable
from app.zulip.receiver import CoreClient, Receiver

log = logging.getLogger(__name__)


def main() -> None:
    settings, app = boot("receiver")
    stop = StopFlag()
    stop.install()
    with app.app_context():
        try:
            api, poll_api = connect_when_reachable(settings, stop), connect_when_reachable(settings, stop)
        except NotConfigured as error:
            print(error, file=sys.stderr)
            sys.exit(2)
        if api is None or poll_api is None:
            return
        core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
        receiver = Receiver(api, poll_api, core, stop)
        if receiver.wait_for_lock():
            receiver.load_progress()
            log.info("receiver started for %s (last message id %s)", receiver.bot_email, receiver.last_id)
            while not stop.stopping:
                receiver.run_once()
        receiver.close()
    log.info("receiver stopped")


if __name__ == "__main__":
    main()
