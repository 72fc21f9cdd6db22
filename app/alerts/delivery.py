"""The outbox handler of ops alerts: each Alertmanager notification posted to the ops stream's topic, once.

Alerts take the chat replies' path (app/zulip/delivery.py: in flight before sending, looked
up after an uncertain attempt, the same retries), as stream messages. They belong to no
student, so they form one queue of their own: in order among themselves, and a retrying
alert holds back no student's reply.
"""

from __future__ import annotations

from typing import Any

from app.outbox.models import OutboxItem, OutboxKind
from app.zulip.delivery import ZulipSender


class AlertSender(ZulipSender):
    name = "ops alerts"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.OPS_ALERT,)
    ordered = True
    lock_class = 7303  # pg advisory lock namespace of the alerts' one queue

    def message(self, item: OutboxItem) -> dict[str, Any]:
        payload = item.payload
        return {"type": "stream", "to": payload["stream"], "topic": payload["topic"], "content": payload["content"]}

    def conversation(self, item: OutboxItem) -> list[dict[str, Any]]:
        return [{"operator": "stream", "operand": item.payload["stream"]},
                {"operator": "topic", "operand": item.payload["topic"]}]

    def addressee(self, item: OutboxItem) -> str:
        return f"#{item.payload['stream']} > {item.payload['topic']}"
