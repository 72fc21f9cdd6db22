"""Run the GitHub test server by hand: `python -m tests.github_server --port 9993`.

It creates the organization with the App installed and some students, prints what the app
needs (App id, installation id, the private key's file) and serves until Ctrl-C or SIGTERM.
`/_test/*` steers it from another process (see control.py).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.lifetime import write_whole

from .server import GitHubTestServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.github_server", description=__doc__)
    parser.add_argument("--port", type=int, default=9993, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--org", default="lessonbot-course")
    parser.add_argument("--students", type=int, default=2, help="how many students to create")
    parser.add_argument("--token-lifetime", type=float, default=3600.0, help="installation token lifetime, s")
    parser.add_argument("--credentials-json", type=Path, default=None,
                        help="write the URL, the App's ids and key and the students' tokens here, as JSON (0600)")
    parser.add_argument("--quiet", action="store_true", help="print only the URL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with GitHubTestServer(port=args.port, org=args.org, token_lifetime_seconds=args.token_lifetime) as gh:
        students = [gh.add_student(f"student{n}") for n in range(1, args.students + 1)]
        print(f"GitHub test server at {gh.url}", flush=True)
        if args.credentials_json is not None:
            data = {"url": gh.url, "org": gh.org.login, "app_id": gh.app.id, "installation_id": gh.installation.id,
                    "private_key_pem": gh.private_key_pem.decode(),
                    "students": [{"login": s.login, "id": s.id, "token": s.token} for s in students]}
            write_whole(args.credentials_json, data)
        if not args.quiet:
            print(f"app id {gh.app.id}, installation {gh.installation.id} on {gh.org.login}", flush=True)
            for student in students:
                print(f"student {student.login}: token {student.token}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
