"""Run the Zulip test server by hand: `python -m tests.zulip_server --port 9991`.

It creates a bot and some students, prints their credentials (and can write the
bot's zuliprc and a JSON file with everyone's), then serves until Ctrl-C or
SIGTERM. `/_test/*` steers it from another process (see control.py).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.lifetime import write_whole

from .control import user_json
from .models import User
from .server import ZulipTestServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tests.zulip_server", description=__doc__)
    parser.add_argument("--port", type=int, default=9991, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--bot-email", default="lessonbot-bot@zulip.example.com")
    parser.add_argument("--bot-name", default="Lessonbot")
    parser.add_argument("--bot-key", default=None, help="fixed API key (default: random)")
    parser.add_argument("--students", type=int, default=2, help="how many students to create")
    parser.add_argument("--zuliprc", type=Path, default=None, help="write the bot's zuliprc here")
    parser.add_argument(
        "--credentials-json", type=Path, default=None, help="write the URL and every user's credentials here, as JSON"
    )
    parser.add_argument("--heartbeat", type=float, default=45.0, help="long-poll heartbeat, seconds")
    parser.add_argument("--queue-timeout", type=float, default=600.0, help="idle event queue lifetime, s")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per window per user (0: none)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window, seconds")
    parser.add_argument("--stream", action="append", default=[], help="create this stream (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="print only the URL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Start the server, print credentials, serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ZulipTestServer(port=args.port, heartbeat_seconds=args.heartbeat, queue_timeout_seconds=args.queue_timeout)
    with server as zs:
        bot = zs.add_user(args.bot_email, args.bot_name, bot=True, api_key=args.bot_key)
        students = [zs.add_user(f"student{n}@zulip.example.com", f"Student {n}") for n in range(1, args.students + 1)]
        for name in args.stream:
            zs.add_stream(name, subscribers=[bot, *students])
        if args.rate_limit:
            zs.set_rate_limit(args.rate_limit, args.rate_window)
        _announce(zs, args, bot, students)
        stop.wait()


def _announce(zs: ZulipTestServer, args: argparse.Namespace, bot: User, students: list[User]) -> None:
    print(f"Zulip test server at {zs.url}", flush=True)
    if args.credentials_json is not None:
        data = {"url": zs.url, "bot": user_json(bot), "students": [user_json(s) for s in students]}
        write_whole(args.credentials_json, data)
    if args.zuliprc is not None:
        zs.write_zuliprc(bot, args.zuliprc)
    if args.quiet:
        return
    for user in (bot, *students[:10]):
        print(f"user: email={user.email} api_key={user.api_key} id={user.id}")
    if len(students) > 10:
        print(f"... and {len(students) - 10} more students")
    print("bot zuliprc:\n" + zs.zuliprc(bot), flush=True)


if __name__ == "__main__":
    main()
