"""A zulip_bots bot that echoes what it is told; run it as a script.

    python tests/zulip_server/echo_bot.py path/to/zuliprc

It runs through `zulip_bots.lib.run_message_handler_for_bot`, exactly as
`zulip-run-bot` does, so a test sees the real framework talk to the server.
"""

from __future__ import annotations

import sys
from typing import Any


class EchoHandler:
    """Replies `echo: <text>` to direct messages and to @-mentions."""

    def usage(self) -> str:
        """What `zulip-run-bot` prints at start."""
        return "Replies 'echo: <text>' to every message it is given."

    def handle_message(self, message: dict[str, Any], bot_handler: Any) -> None:
        """Answer in the same conversation."""
        bot_handler.send_reply(message, "echo: " + message["content"])


handler_class = EchoHandler


def main(config_file: str) -> None:
    """Run the bot until the process is stopped."""
    from zulip_bots.lib import run_message_handler_for_bot

    run_message_handler_for_bot(
        lib_module=sys.modules[__name__],
        quiet=False,
        config_file=config_file,
        bot_config_file=None,
        bot_name="echo",
        bot_source="tests/zulip_server/echo_bot.py",
    )


if __name__ == "__main__":
    main(sys.argv[1])
