"""The poller and /internal/messages against history: cost must follow the work, not the rows kept.

For each size of finished history (none, 100 000 and 1 000 000 rows: a tenth as many finished
runs, as many inbound messages and as many delivered replies, and expired sign-in requests),
a fresh durable PostgreSQL database (fsync on, as production) gets 10 000 active runs of which
1 000 are due, and the same run measures:

- draining the 1 000 due checks: the poller's own claim, then the run rescheduled, one
  transaction each (what a check costs besides the check itself, the part history can grow);
- an idle pass of the poller (``Poller.run_once`` with nothing due: the timeout and reminder
  claims, grade delivery, the heartbeat), median of 20;
- ``/internal/messages``: 300 messages from new students through the app, mean per message;

and prints each with its ratio to the empty database's, and the query plans of the claims at
the largest size. Target (issue 11): the drain and the idle pass within 1.2x of the empty one's.

    .venv/bin/python -m bench.history [--sizes 0,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

SECRET = "bench-secret-0123456789abcdef"
ACTIVE, DUE, MESSAGES = 10_000, 1_000, 300

# :history rows each of inbound messages and delivered replies; :runs finished runs.
SEED_HISTORY = """
INSERT INTO students (id, email, full_name, language, created_at)
  SELECT n, 'old' || n || '@school.example', 'Former Student ' || n, 'ru', now() - interval '200 days'
  FROM generate_series(1, :runs) n;
INSERT INTO lesson_runs (student_id, lesson_id, status, step_index, points, context, started_at, last_activity_at,
                         finished_at, check_failures)
  SELECT n, 'git-basics', (ARRAY['completed', 'stopped'])[1 + n % 2]::text, 7, 100, '{}', now() - interval '200 days',
         now() - interval '190 days', now() - interval '190 days', 0 FROM generate_series(1, :runs) n;
INSERT INTO inbound_messages (message_id, student_id, content, received_at)
  SELECT 'zulip:' || n, 1 + n % :runs, 'an old message the student wrote, number ' || n, now() - interval '190 days'
  FROM generate_series(1, :history) n;
INSERT INTO outbox (kind, student_id, payload, status, attempts, next_attempt_at, created_at, sent_at, ambiguous)
  SELECT 'chat_reply', 1 + n % :runs, '{"to": "old@school.example", "content": "**Step 3 of 7.** An old reply."}',
         'sent', 1, now() - interval '190 days', now() - interval '190 days', now() - interval '190 days', false
  FROM generate_series(1, :history) n;
INSERT INTO oauth_requests (state, purpose, expires_at, created_at)
  SELECT 'expired-' || n, 'admin', now() - interval '180 days', now() - interval '180 days'
  FROM generate_series(1, :runs / 10) n
"""
SEED_ACTIVE = """
INSERT INTO students (id, email, full_name, language, created_at)
  SELECT 10000000 + n, 'active' || n || '@school.example', 'Student ' || n, 'ru', now() FROM generate_series(1, :active) n;
INSERT INTO lesson_runs (student_id, lesson_id, status, step_index, points, context, started_at, last_activity_at,
                         check_failures, next_check_at)
  SELECT 10000000 + n, 'zulip-basics', 'active', n % 6, 0, '{}', now() - interval '1 hour', now(), 0,
         CASE WHEN n <= :due THEN now() - interval '1 minute' ELSE now() + interval '1 hour' END
  FROM generate_series(1, :active) n
"""


@dataclass
class Figures:
    history: int
    drain_s: float
    idle_pass_ms: float
    message_ms: float
    plans: dict[str, str]


def measure(cluster: object, history: int, root: Path) -> Figures:
    from flask_migrate import upgrade

    from app import create_app
    from app.db import db
    from app.settings import Settings
    from app.workers.poller import Poller

    url = cluster.create_database(f"history_{history}")  # type: ignore[attr-defined]
    settings = Settings(_env_file=None, database_url=url, secret_key=SECRET, internal_token=SECRET,  # type: ignore[call-arg]
                        git_hook_secret=SECRET, git_root=root / f"git-{history}", default_language="en")
    app = create_app(settings)
    with app.app_context():
        upgrade()
        seed(history)
        poller = Poller(settings, app.extensions["lessonbot.catalog"])
        plans = {name: explain(claim) for name, claim in claims(poller).items()}
        drain_s = drain_due(poller)
        idle = []
        for _ in range(20):
            started = time.perf_counter()
            poller.run_once()
            idle.append(time.perf_counter() - started)
        message_ms = post_messages(app, settings)
        db.engine.dispose()
    return Figures(history, drain_s, statistics.median(idle) * 1000, message_ms, plans)


def seed(history: int) -> None:
    from app.db import db

    started = time.perf_counter()
    values = {"history": history, "runs": max(history // 10, 1), "active": ACTIVE, "due": DUE}
    for statement in (SEED_HISTORY.split(";") if history else []) + SEED_ACTIVE.split(";"):
        db.session.execute(sa.text(statement), values)
    db.session.execute(sa.text("SELECT setval('students_id_seq', (SELECT max(id) FROM students))"))
    db.session.commit()
    db.session.execute(sa.text("ANALYZE"))
    db.session.commit()
    print(f"  seeded {history} rows of history and {ACTIVE} active runs in {time.perf_counter() - started:.1f} s",
          flush=True)


def claims(poller: object) -> dict[str, object]:
    return {"due check": poller._claim_due_check, "timeout": poller._claim_timeout,  # type: ignore[attr-defined]
            "reminder": poller._claim_reminder}  # type: ignore[attr-defined]


def explain(claim: object) -> str:
    """EXPLAIN ANALYZE of the claim's statement, as the poller sends it."""
    from app.db import db

    captured: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, context: object, many: bool) -> None:
        if "FROM lesson_runs" in statement and not statement.startswith("EXPLAIN"):
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        claim()  # type: ignore[operator]
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
        db.session.rollback()
    statement, parameters = captured[0]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}", parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        raw.rollback()
    finally:
        raw.close()
    return plan


def drain_due(poller: object) -> float:
    from app.db import db, utcnow

    started = time.perf_counter()
    drained = 0
    while (run := poller._claim_due_check()) is not None:  # type: ignore[attr-defined]
        run.next_check_at = utcnow() + timedelta(hours=1)
        db.session.commit()
        drained += 1
    db.session.rollback()
    assert drained == DUE, drained
    return time.perf_counter() - started


def post_messages(app: object, settings: object) -> float:
    client = app.test_client()  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {SECRET}"}
    started = time.perf_counter()
    for n in range(MESSAGES):
        body = {"message_id": f"zulip:bench-{n}", "sender_email": f"new{n}@school.example", "sender_id": 50_000_000 + n,
                "content": "help"}
        response = client.post("/internal/messages", data=json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
    return (time.perf_counter() - started) / MESSAGES * 1000


def report(figures: list[Figures]) -> None:
    base = figures[0]
    print(f"\n{'history rows':>14}{'drain 1000 due (s)':>20}{'ratio':>7}{'idle pass (ms)':>16}{'ratio':>7}"
          f"{'message (ms)':>14}{'ratio':>7}")
    for f in figures:
        print(f"{f.history:>14,}{f.drain_s:>20.2f}{f.drain_s / base.drain_s:>7.2f}{f.idle_pass_ms:>16.1f}"
              f"{f.idle_pass_ms / base.idle_pass_ms:>7.2f}{f.message_ms:>14.2f}{f.message_ms / base.message_ms:>7.2f}")
    largest = figures[-1]
    print(f"\nquery plans at {largest.history:,} rows of history:")
    for name, plan in largest.plans.items():
        print(f"-- {name}\n{plan}")
    worst = max(max(f.drain_s / base.drain_s, f.idle_pass_ms / base.idle_pass_ms) for f in figures)
    print(f"\nworst ratio to the empty database: {worst:.2f} (target <= 1.2)")


def main() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,100000,1000000", help="rows of history, comma-separated")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    from tests.pg import PgCluster

    cluster = PgCluster(durable=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="lessonbot-bench-history-") as tmp:
            figures = []
            for size in sizes:
                print(f"history {size:,} rows", flush=True)
                figures.append(measure(cluster, size, Path(tmp)))
    finally:
        cluster.stop()
    report(figures)


if __name__ == "__main__":
    main()
