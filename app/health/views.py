"""GET /health: database and component status; 503 when the database is down."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from app import state
from app.db import db, utcnow
from app.outbox.service import count_pending
from app.status.service import stale_after
from app.workers.models import WorkerStatus
from app.zulip.deadletters import count_dead_letters

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
WORKERS = ("poller",)
REPORTED = ("error", "errors", "alive", "threads", "restarts")  # what a worker's heartbeat may tell /health


def _workers(limit: timedelta) -> dict[str, dict[str, object]]:
    beats = {row.name: row for row in db.session.scalars(sa.select(WorkerStatus))}
    now = utcnow()
    report: dict[str, dict[str, object]] = {}
    for name in sorted(set(WORKERS) | set(beats)):
        row = beats.get(name)
        if row is None:
            report[name] = {"status": "never_seen"}
            continue
        age = (now - row.beat_at).total_seconds()
        info = row.info or {}
        status = "stale" if age > limit.total_seconds() else "error" if info.get("status") == "error" else "ok"
        report[name] = {"status": status, "seconds_since_beat": round(age, 1),
                        **{key: info[key] for key in REPORTED if info.get(key) is not None}}
    return report


@bp.get("/health")
def health() -> tuple[Response, int]:
    settings = state.settings()
    components: dict[str, object] = {"lessons": {"status": "ok", "count": len(state.catalog())}}
    try:
        db.session.execute(sa.text("SELECT 1"))
        components["database"] = {"status": "ok", "dialect": db.engine.dialect.name}
        components["outbox"] = {"status": "ok", "pending": count_pending()}
        components["workers"] = _workers(stale_after(settings))
        dead = count_dead_letters()
        components["dead_letters"] = {"status": "attention" if dead else "ok", "count": dead}
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("health: database unavailable: %s", error.__class__.__name__)
        components["database"] = {"status": "error", "error": "database unavailable"}
        return jsonify(status="error", components=components), 503
    finally:
        db.session.remove()
    return jsonify(status="ok", components=components), 200
