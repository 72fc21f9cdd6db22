"""Webhook deliveries, signed as GitHub signs them, sent from a thread of their own.

Payloads carry GitHub's common fields (`action` where the event has one, `repository`, `sender`,
`installation`); they are not checked against `@octokit/openapi-webhooks` yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Delivery:
    id: str
    event: str
    payload: dict[str, Any]
    status: int | None = None  # None: not answered (yet)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Where the App's webhook points, and the deliveries made so far."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.secret = ""
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def configure(self, url: str | None, secret: str = "") -> None:
        self.url, self.secret = url, secret
        if url is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="github-webhooks", daemon=True)
            self._thread.start()

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        if self.url is None:
            return
        delivery = Delivery(str(uuid.uuid4()), event, payload)
        self.deliveries.append(delivery)
        self._queue.put(delivery)

    def send(self, delivery: Delivery, *, signature: str | None = None) -> int:
        """POST one delivery now (tests replay or forge with this); its status."""
        assert self.url is not None
        body = json.dumps(delivery.payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/lessonbot-test",
                   "X-GitHub-Event": delivery.event, "X-GitHub-Delivery": delivery.id,
                   "X-Hub-Signature-256": signature if signature is not None else sign(self.secret, body)}
        return self._session.post(self.url, data=body, headers=headers, timeout=30).status_code

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every queued delivery was answered (or failed)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still pending")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
        self._session.close()

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            try:
                delivery.status = self.send(delivery)
            except requests.RequestException:
                delivery.status = None
            finally:
                self._queue.task_done()
        self._queue.task_done()
