"""The zulip_bots echo bot with the framework's own 20-messages-per-5-s limit lifted.

``zulip_bots.lib.ExternalBotHandler`` hard-codes ``RateLimit(20, 5)`` and exits when a
bot sends faster, so under a benchmark load the stock framework stops after 20 replies.
To compare raw throughput, this runner makes that limiter always allow; everything
else (event loop, handler, replies) is the unchanged framework.

    python -m bench.echo_bot_unlimited path/to/zuliprc
"""

from __future__ import annotations

import sys

import zulip_bots.lib


class _NoLimit(zulip_bots.lib.RateLimit):
    def is_legal(self) -> bool:
        return True


if __name__ == "__main__":
    zulip_bots.lib.RateLimit = _NoLimit  # type: ignore[misc]
    from tests.zulip_server import echo_bot

    echo_bot.main(sys.argv[1])
