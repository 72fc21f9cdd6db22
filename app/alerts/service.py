"""An Alertmanager notification (its webhook body, version 4) as one message for the ops stream.

Alertmanager groups alerts and sends one notification per group when it fires, repeats,
or resolves; each notification becomes one outbox item in the caller's transaction, and
the dispatcher posts it to the ops stream and topic (app/alerts/delivery.py) like a chat
reply, with the same retries and the same look-up before a retry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.db import db, upsert_insert, utcnow
from app.metrics.registry import ALERTS_RECEIVED
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings

MAX_ALERTS = 200  # Alertmanager's max_alerts in the role is smaller; this bounds what any caller may send
MAX_LISTED = 20  # alerts written out in one message; the rest are counted
MAX_CONTENT = 9000  # Zulip refuses messages over 10 000 characters
DEDUPE_WINDOW_SECONDS = 300  # a resend within 5-10 min is the same notification; repeat_interval is hours
Status = Literal["firing", "resolved"]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Alert(_Camel):
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    fingerprint: str = ""


class Notification(_Camel):
    """Alertmanager's webhook body (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    version: Literal["4"]
    status: Status
    receiver: str
    group_key: str = Field(max_length=2000)
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_ALERTS)


def queue_alert(notification: Notification, settings: Settings, now: datetime | None = None) -> int | None:
    """Write the notification to the outbox for the ops stream; the caller commits. The item's id.

    None if the same notification was queued in the last few minutes: Alertmanager sends it
    again when its webhook call timed out after we had committed, and the ops stream should
    see it once. Its deliberate repeats (``repeat_interval``, hours) still get through.
    """
    keys = _dedupe_keys(notification, now or utcnow())
    if db.session.scalar(sa.select(OutboxItem.id).where(OutboxItem.dedupe_key.in_(keys)).limit(1)) is not None:
        return None
    payload: dict[str, Any] = {"stream": settings.ops_stream, "topic": settings.ops_topic,
                               "content": render(notification)}
    item_id = db.session.scalar(upsert_insert(OutboxItem.__table__).values(
        kind=OutboxKind.OPS_ALERT, student_id=None, payload=payload, status=OutboxStatus.PENDING, attempts=0,
        dedupe_key=keys[0], next_attempt_at=sa.func.now(), created_at=sa.func.now())
        .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OutboxItem.id))
    if item_id is None:  # the same notification, queued by a concurrent request a moment ago
        return None
    ALERTS_RECEIVED.labels(notification.status).inc()
    return int(item_id)


def _dedupe_keys(notification: Notification, now: datetime) -> tuple[str, str]:
    """The notification's key in this time window and in the one before: a resend within one window matches."""
    alerts = sorted((alert.fingerprint, alert.labels.get("alertname", ""), alert.status, alert.starts_at.isoformat())
                    for alert in notification.alerts)
    digest = hashlib.sha256(json.dumps([notification.group_key, notification.status, alerts]).encode()).hexdigest()
    window = int(now.timestamp()) // DEDUPE_WINDOW_SECONDS
    return f"alert:{digest[:40]}:{window}", f"alert:{digest[:40]}:{window - 1}"


def render(notification: Notification) -> str:
    """The message: a headline with the group and status, then one line per alert, firing first."""
    alerts = sorted(notification.alerts, key=lambda alert: (alert.status != "firing", alert.starts_at))
    firing = sum(1 for alert in alerts if alert.status == "firing")
    group = ", ".join(f"{key}={value}" for key, value in sorted(notification.group_labels.items())) or "all alerts"
    if notification.status == "firing":
        headline = f":warning: **FIRING** {firing} of {len(alerts)} · {group}"
    else:
        headline = f":check: **RESOLVED** {len(alerts)} · {group}"
    lines = [headline, *(_line(alert) for alert in alerts[:MAX_LISTED])]
    hidden = len(alerts) - MAX_LISTED + notification.truncated_alerts
    if hidden > 0:
        lines.append(f"… and {hidden} more")
    content = "\n".join(lines)
    return content if len(content) <= MAX_CONTENT else content[:MAX_CONTENT - 1] + "…"


def _line(alert: Alert) -> str:
    name = alert.labels.get("alertname", "alert")
    where = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items())
                      if key not in ("alertname", "severity"))
    text = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    since = alert.starts_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    state = "firing since" if alert.status == "firing" else "resolved; began"
    runbook = alert.annotations.get("runbook", "")
    parts = [f"- **{name}**", f"({alert.labels['severity']})" if "severity" in alert.labels else "",
             f"`{where}`" if where else "", f"{text}" if text else "", f"— {state} {since}",
             f"· runbook: {runbook}" if runbook and alert.status == "firing" else ""]
    return " ".join(part for part in parts if part)
