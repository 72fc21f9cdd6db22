"""Run the Google test server standalone: ``python -m tests.google_server --port 8099``."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from .server import GoogleTestServer

CLASSROOM_SCOPES = [
    "https://www.googleapis.com/auth/classroom.courses",
    "https://www.googleapis.com/auth/classroom.coursework.students",
    "https://www.googleapis.com/auth/classroom.rosters",
]
OTHER_SCOPES = ["https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/spreadsheets"]


def main(argv: list[str] | None = None) -> None:
    """Start the server on 127.0.0.1, print demo credentials as JSON, serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--account", default="teacher@example.com", help="account that consent auto-approves")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with GoogleTestServer(args.port) as server:
        client_id, secret = server.add_oauth_client(server.add_project("lessonbot"))
        server.auto_approve_as(args.account)
        refresh_token = server.issue_refresh_token(client_id, args.account, CLASSROOM_SCOPES + OTHER_SCOPES)
        print(
            json.dumps(
                {
                    "url": server.url,
                    "token_uri": server.token_uri,
                    "auth_uri": server.auth_uri,
                    "ca_file": str(server.ca_file),
                    "client_id": client_id,
                    "client_secret": secret,
                    "refresh_token": refresh_token,
                    "account": args.account,
                },
                indent=2,
            ),
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
