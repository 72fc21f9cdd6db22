"""POST /internal/alerts: Alertmanager's webhook (loopback, internal token)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app import current
from app.alerts.service import Notification, queue_alert
from app.db import db
from app.http import json_body, require_internal

bp = Blueprint("alerts", __name__)


@bp.post("/internal/alerts")
def alertmanager_webhook() -> tuple[Response, int]:
    require_internal()
    notification = json_body(Notification)
    item_id = queue_alert(notification, current.settings())
    db.session.commit()
    if item_id is None:
        return jsonify(status="duplicate"), 200
    return jsonify(status="queued", outbox_id=item_id), 202
