"""Run the Google test server standalone: ``python -m tests.google_server --port 8099``."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from tests.lifetime import write_whole

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
    parser.add_argument("--drive-folder", default=None, help="create a Drive folder of this name (its id: drive_folder_id)")
    parser.add_argument("--credentials-json", type=Path, default=None, help="also write the printed JSON to this file")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with GoogleTestServer(args.port) as server:
        client_id, secret = server.add_oauth_client(server.add_project("lessonbot"))
        server.auto_approve_as(args.account)
        scopes = CLASSROOM_SCOPES + OTHER_SCOPES
        refresh_token = server.issue_refresh_token(client_id, args.account, scopes)
        banner: dict[str, Any] = {
            "url": server.url,
            "token_uri": server.token_uri,
            "auth_uri": server.auth_uri,
            "ca_file": str(server.ca_file),
            "client_id": client_id,
            "client_secret": secret,
            "refresh_token": refresh_token,
            "account": args.account,
            "scopes": scopes,
        }
        if args.drive_folder:
            banner["drive_folder_id"] = server.add_drive_file(args.drive_folder)
        if args.credentials_json is not None:
            write_whole(args.credentials_json, banner)
        print(json.dumps(banner, indent=2), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
