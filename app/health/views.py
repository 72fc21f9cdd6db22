"""GET /health: the database, the workers and the other components; 503 when something needs an admin."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from app import current
from app.db import db
from app.http import is_loopback
from app.outbox.service import count_pending
from app.settings import Settings
from app.workers.health import worker_states
from app.zulip.deadletters import count_dead_letters

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    """ok (200); degraded (503) when a required worker is stale, dead, stuck or never started;
    error (503) when the database cannot be reached. Only callers on the machine itself (a
    monitoring agent, an admin's curl) get the components: the world learns just the status."""
    status, body, code = _health(current.settings())
    if not is_loopback(request.remote_addr):
        return jsonify(status=status), code
    return jsonify(status=status, **body), code


def _health(settings: Settings) -> tuple[str, dict[str, object], int]:
    components: dict[str, object] = {"lessons": {"status": "ok", "count": len(current.catalog())}}
    try:
        db.session.execute(sa.text("SELECT 1"))
        components["database"] = {"status": "ok", "dialect": db.engine.dialect.name}
        components["outbox"] = {"status": "ok", "pending": count_pending()}
        workers = worker_states(settings)
        components["workers"] = {worker.name: worker.report() for worker in workers}
        dead = count_dead_letters()
        components["dead_letters"] = {"status": "attention" if dead else "ok", "count": dead}
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("health: database unavailable: %s", error.__class__.__name__)
        components["database"] = {"status": "error", "error": "database unavailable"}
        return "error", {"components": components}, 503
    finally:
        db.session.remove()
    degraded = sorted(worker.name for worker in workers if worker.degrades)
    if degraded:
        return "degraded", {"degraded": degraded, "components": components}, 503
    return "ok", {"components": components}, 200
