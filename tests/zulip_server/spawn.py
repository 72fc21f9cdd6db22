"""`SpawnedZulipTestServer`: the test server in its own process, steered over `/_test/*`.

For benchmarks: thousands of clients and the server would otherwise share one
GIL. In its own process the server answers about twice as many requests per second.
The process dies with the one that started it, even when that one is killed
(tests/lifetime.py), and its directory is swept by the next test session.

    with SpawnedZulipTestServer(students=1000) as zs:
        clients = [zs.client(s) for s in zs.students]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from tests import lifetime

from .credentials import Credentials
from .faults import Fault
from .models import User

REPO = Path(__file__).resolve().parents[2]


class SpawnedZulipTestServer(Credentials):
    """Runs `python -m tests.zulip_server` on 127.0.0.1 and mirrors the in-process API."""

    def __init__(
        self,
        *,
        students: int = 2,
        heartbeat_seconds: float = 45.0,
        queue_timeout_seconds: float = 600.0,
        start_timeout: float = 30.0,
    ) -> None:
        self._args = [
            "--port",
            "0",
            "--students",
            str(students),
            "--quiet",
            "--heartbeat",
            str(heartbeat_seconds),
            "--queue-timeout",
            str(queue_timeout_seconds),
        ]
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._record = lifetime.this_process_record()
        self._workdir: Path | None = None
        self._session = requests.Session()
        self.url = ""
        self.bot: User | None = None
        self.students: list[User] = []

    def start(self) -> Self:
        """Start the process and wait until it has written its credentials."""
        self._workdir = self._record.tempdir("zulip-test-server-")
        credentials = self._workdir / "credentials.json"
        command = [sys.executable, "-m", "tests.zulip_server", *self._args, "--credentials-json", str(credentials)]
        self._process = self._record.popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self._start_timeout
        while not credentials.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Zulip test server did not start")
            time.sleep(0.05)
        data = json.loads(credentials.read_text())
        self.url = data["url"]
        self.bot = _user(data["bot"])
        self.students = [_user(item) for item in data["students"]]
        return self

    @property
    def pid(self) -> int:
        """The server process, while it runs."""
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is not None:
            self._record.stop(self._process, grace=10)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._session.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    def add_user(self, email: str, full_name: str, bot: bool = False) -> User:
        """Create an account in the server process."""
        return _user(self._control("POST", "users", {"email": email, "full_name": full_name, "bot": bot}))

    def messages(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Stored messages (id, sender_id, type, recipient_ids, stream, topic, content)."""
        return list(self._control("GET", "messages", {"after_id": after_id}))

    def set_rate_limit(self, max_requests: int, per_seconds: float) -> None:
        """Per-user limit, as `ZulipTestServer.set_rate_limit`."""
        self._control("POST", "rate_limit", {"max_requests": max_requests, "per_seconds": per_seconds})

    def clear_rate_limit(self) -> None:
        """No rate limit."""
        self._control("POST", "rate_limit", {"max_requests": None})

    def script_faults(self, items: list[Fault | int | str | None], endpoint: str | None = None) -> None:
        """As `Faults.script`: the next matching requests get these answers in order."""
        encoded = [item.__dict__ if isinstance(item, Fault) else item for item in items]
        self._control("POST", "faults", {"kind": "script", "items": encoded, "endpoint": endpoint})

    def set_error_rate(self, fraction: float, status: int = 503, endpoint: str | None = None) -> None:
        """As `Faults.set_error_rate`."""
        self._control("POST", "faults", {"kind": "error_rate", "fraction": fraction, "status": status, "endpoint": endpoint})

    def set_delay(self, seconds: float, endpoint: str | None = None) -> None:
        """As `Faults.set_delay`."""
        self._control("POST", "faults", {"kind": "delay", "seconds": seconds, "endpoint": endpoint})

    def clear_faults(self) -> None:
        """As `Faults.clear`."""
        self._control("POST", "faults", {"kind": "clear"})

    def expire_queues(self, user: User | None = None) -> int:
        """Expire event queues now (all, or one user's)."""
        body = {"email": user.email} if user is not None else {}
        return int(self._control("POST", "expire_queues", body)["expired"])

    def configure(self, *, heartbeat_seconds: float | None = None, queue_timeout_seconds: float | None = None) -> None:
        """Change the heartbeat interval or the idle queue timeout."""
        body = {
            key: value
            for key, value in (("heartbeat_seconds", heartbeat_seconds), ("queue_timeout_seconds", queue_timeout_seconds))
            if value is not None
        }
        self._control("POST", "settings", body)

    def state(self, queues_of: User | None = None, *, requests: bool = False) -> dict[str, Any]:
        """Users, live queue ids (of one user, if given) and the message count; ``requests``: that user's
        requests so far, by method and path."""
        body: dict[str, Any] = {"user_id": queues_of.id} if queues_of else {}
        if requests:
            body["requests"] = "1"
        return dict(self._control("GET", "state", body))

    def _control(self, method: str, name: str, body: dict[str, Any]) -> Any:
        url = f"{self.url}/_test/{name}"
        if method == "GET":
            response = self._session.get(url, params=body, timeout=30)
        else:
            response = self._session.post(url, json=body, timeout=30)
        response.raise_for_status()
        return response.json()


def _user(data: dict[str, Any]) -> User:
    return User(int(data["id"]), data["email"], data["api_key"], data["full_name"], bool(data["is_bot"]))
