"""POST /internal/messages: an inbound chat message from the receiver."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app import current
from app.chat.service import InboundChat, receive_message
from app.http import json_body, require_internal

bp = Blueprint("chat", __name__)


@bp.post("/internal/messages")
def inbound_message() -> tuple[Response, int]:
    require_internal()
    message = json_body(InboundChat)
    received = receive_message(message, current.catalog(), current.settings())
    if received.duplicate:
        return jsonify(status="duplicate", message_id=message.message_id), 200
    return jsonify(status="accepted", message_id=message.message_id, replies=received.replies), 200
