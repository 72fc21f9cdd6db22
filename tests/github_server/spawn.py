"""`SpawnedGitHubTestServer`: the test server in its own process, steered over `/_test/*`.

For benchmarks (the poller's thousands of runs would otherwise share one GIL with the
server). The process dies with the one that started it (tests/lifetime.py).
"""

from __future__ import annotations

import base64
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

REPO = Path(__file__).resolve().parents[2]


class SpawnedGitHubTestServer:
    """Runs `python -m tests.github_server` on 127.0.0.1; `url`, `app_id`, `private_key_pem`, … once started."""

    def __init__(self, *, students: int = 2, token_lifetime_seconds: float = 3600.0,
                 start_timeout: float = 30.0) -> None:
        self._args = ["--port", "0", "--quiet", "--students", str(students),
                      "--token-lifetime", str(token_lifetime_seconds)]
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._record = lifetime.this_process_record()
        self._workdir: Path | None = None
        self._session = requests.Session()
        self.url = ""
        self.org = ""
        self.app_id = 0
        self.installation_id = 0
        self.private_key_pem = b""
        self.students: list[dict[str, Any]] = []

    def start(self) -> Self:
        self._workdir = self._record.tempdir("github-test-server-")
        credentials = self._workdir / "credentials.json"
        command = [sys.executable, "-m", "tests.github_server", *self._args, "--credentials-json", str(credentials)]
        self._process = self._record.popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self._start_timeout
        while not credentials.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the GitHub test server did not start")
            time.sleep(0.05)
        data = json.loads(credentials.read_text())
        self.url, self.org = data["url"], data["org"]
        self.app_id, self.installation_id = int(data["app_id"]), int(data["installation_id"])
        self.private_key_pem = data["private_key_pem"].encode()
        self.students = list(data["students"])
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None:
            self._record.stop(self._process, grace=10)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._session.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def add_template(self, name: str, files: dict[str, bytes]) -> str:
        encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}
        return str(self._control("POST", "templates", {"name": name, "files": encoded})["full_name"])

    def add_student(self, login: str) -> dict[str, Any]:
        return dict(self._control("POST", "students", {"login": login}))

    def set_rate_limit(self, limit: int, window_seconds: float = 3600.0) -> None:
        self._control("POST", "rate_limit", {"limit": limit, "window_seconds": window_seconds})

    def script_faults(self, items: list[Any], endpoint: str | None = None) -> None:
        self._control("POST", "faults", {"kind": "script", "items": items, "endpoint": endpoint})

    def seed_repos(self, prefix: str, count: int, files: dict[str, bytes], uninvited: list[int]) -> None:
        encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}
        self._control("POST", "seed_repos", {"prefix": prefix, "count": count, "files": encoded, "uninvited": uninvited})

    def branch(self, repo: str, name: str) -> None:
        self._control("POST", "branch", {"repo": repo, "name": name})

    def requests(self, since: int = 0) -> list[list[Any]]:
        return list(self._control("GET", "requests", {"since": since}))

    def state(self) -> dict[str, Any]:
        return dict(self._control("GET", "state", {}))

    def _control(self, method: str, name: str, body: dict[str, Any]) -> Any:
        url = f"{self.url}/_test/{name}"
        if method == "GET":
            response = self._session.get(url, params=body, timeout=30)
        else:
            response = self._session.post(url, json=body, timeout=30)
        response.raise_for_status()
        return response.json()
