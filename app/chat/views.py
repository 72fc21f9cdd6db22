"""POST /internal/messages (one inbound chat message) and /internal/messages/batch (one long-poll's worth), from the receiver."""

from __future__ import annotations

import json

from flask import Blueprint, Response

from app import current
from app.chat.service import InboundBatch, InboundChat, receive_batch, receive_message
from app.http import json_body, require_internal

bp = Blueprint("chat", __name__)


@bp.post("/internal/messages")
def inbound_message() -> tuple[Response, int]:
    require_internal()
    message = json_body(InboundChat)
    received = receive_message(message, current.catalog(), current.settings())
    if received.duplicate:
        return _json({"status": "duplicate", "message_id": message.message_id}), 200
    return _json({"status": "accepted", "message_id": message.message_id, "replies": received.replies}), 200


def _json(body: dict[str, object]) -> Response:
    """The answer as plain ``json.dumps`` (both message endpoints): Flask's provider (``jsonify``) cost a
    twentieth of a message's CPU."""
    return Response(json.dumps(body), mimetype="application/json")


@bp.post("/internal/messages/batch")
def inbound_batch() -> tuple[Response, int]:
    """What one long-poll brought, in one transaction; a result per message, in the order sent."""
    require_internal()
    batch = json_body(InboundBatch)
    results = receive_batch(batch.messages, current.catalog(), current.settings())
    return _json({"results": [{key: value for key, value in vars(result).items() if value is not None}
                              for result in results]}), 200
