"""POST /github/hook: GitHub's webhook deliveries."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from app import current
from app.db import db
from app.github.webhooks import BadDelivery, handle_delivery, remember_delivery, verify
from app.http import ApiError

bp = Blueprint("github", __name__)


@bp.post("/github/hook")
def github_hook() -> tuple[Response, int]:
    settings = current.settings()
    if settings.github_webhook_secret is None:
        raise ApiError(404, "not_configured", "GitHub webhooks are not configured (LESSONBOT_GITHUB_WEBHOOK_SECRET).")
    body = request.get_data(cache=True)
    try:
        verify(settings.github_webhook_secret.get_secret_value(), request.headers.get("X-Hub-Signature-256"), body)
        remember_delivery(request.headers.get("X-GitHub-Delivery"))
    except BadDelivery as error:
        raise ApiError(401, "bad_signature", str(error)) from error
    db.session.commit()  # remembered before it is acted on: a concurrent replay waits, then fails
    if request.headers.get("X-GitHub-Event") == "ping":
        return jsonify(status="pong"), 200
    payload: Any = request.get_json(silent=True)
    repository = payload.get("repository") if isinstance(payload, dict) else None
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(full_name, str):
        return jsonify(status="ignored"), 200
    result = handle_delivery(full_name, current.catalog(), settings)
    db.session.commit()
    return jsonify(status=result.status, passed=result.passed), 200
