"""The fair baseline: the same durable work as /internal/messages, done the simplest way.

One psycopg2 connection per uWSGI process; for each message: store it (``ON CONFLICT DO
NOTHING`` on its id), upsert its student by email, queue one reply row, commit. No dialog,
no lesson state, no framework beyond Flask's routing: what any implementation must at
least pay for "persist the message and the reply, exactly once".
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg2
from flask import Flask, request

app = Flask(__name__)
_connection: Any = None
REPLY = json.dumps({"content": "I am Lessonbot and I run interactive lessons."})


def _db() -> Any:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg2.connect(os.environ["DATABASE_URL"])
    return _connection


@app.post("/internal/messages")
def message() -> tuple[str, int]:
    body = json.loads(request.get_data())
    connection = _db()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO inbound_messages (message_id, content, received_at) VALUES (%s, %s, now()) "
                       "ON CONFLICT (message_id) DO NOTHING RETURNING id", (body["message_id"], body["content"]))
        if cursor.fetchone() is None:
            connection.commit()
            return "duplicate", 200
        cursor.execute("INSERT INTO students (email, full_name, language, created_at) VALUES (%s, %s, 'en', now()) "
                       "ON CONFLICT (email) DO UPDATE SET full_name = EXCLUDED.full_name RETURNING id",
                       (body["sender_email"], body.get("sender_full_name", "")))
        (student_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO outbox (kind, student_id, payload, status, attempts, next_attempt_at, created_at, "
                       "ambiguous) VALUES ('chat_reply', %s, %s, 'pending', 0, now(), now(), false)", (student_id, REPLY))
    connection.commit()
    return "ok", 200


@app.get("/ok")
def ok() -> str:
    return "ok"
