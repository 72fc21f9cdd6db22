"""Webhook deliveries, signed as GitHub signs them, sent from a thread of their own.

Each delivery carries the headers GitHub sends with every one and the payload of its event
(`shapes.py`); observers (`WebhookContract`, contract.py) see each delivery the server makes,
whether or not a webhook URL is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Delivery:
    id: str
    event: str
    payload: dict[str, Any]
    status: int | None = None  # None: not answered (yet)


WebhookObserver = Callable[[str, dict[str, str], dict[str, Any]], None]  # event, headers, payload
HOOK_ID = "1"  # the App's one webhook


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Where the App's webhook points, and the deliveries made so far."""

    def __init__(self, app_id: int = 0) -> None:
        self.app_id = app_id
        self.url: str | None = None
        self.secret = ""
        self.deliveries: list[Delivery] = []
        self.observers: list[WebhookObserver] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def configure(self, url: str | None, secret: str = "") -> None:
        self.url, self.secret = url, secret
        if url is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="github-webhooks", daemon=True)
            self._thread.start()

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        delivery = Delivery(str(uuid.uuid4()), event, payload)
        for observer in list(self.observers):
            observer(event, self.headers(delivery, json.dumps(payload).encode()), payload)
        if self.url is None:
            return
        self.deliveries.append(delivery)
        self._queue.put(delivery)

    def headers(self, delivery: Delivery, body: bytes, signature: str | None = None) -> dict[str, str]:
        """What GitHub sends with a delivery of the App's webhook."""
        return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/lessonbot-test",
                "X-GitHub-Event": delivery.event, "X-GitHub-Delivery": delivery.id, "X-GitHub-Hook-ID": HOOK_ID,
                "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
                "X-GitHub-Hook-Installation-Target-Type": "integration",
                "X-Hub-Signature-256": signature if signature is not None else sign(self.secret, body)}

    def send(self, delivery: Delivery, *, signature: str | None = None) -> int:
        """POST one delivery now (tests replay or forge with this); its status."""
        assert self.url is not None
        body = json.dumps(delivery.payload).encode()
        return self._session.post(self.url, data=body, headers=self.headers(delivery, body, signature),
                                  timeout=30).status_code

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
