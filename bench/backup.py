"""Backup and restore of a seeded database of 10 000 students: times, sizes, and the plain baseline.

Seeds a durable PostgreSQL (fsync on, as production) with students, finished and active runs,
step results, inbound messages and outbox rows (``--students``, default 10 000), then measures
in the same run:

- plain ``pg_dump --format=custom`` to a file (the baseline) and Lessonbot's
  ``pg_dump | age`` to a file; the ratio of the two;
- the verified upload of the encrypted file to Drive (the Google test server, over TLS);
- ``age --decrypt | pg_restore`` into an empty database beside plain ``pg_restore``, and
  that the restored database has the same row counts.

    .venv/bin/python -m bench.backup [--students 10000]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
SECRET = "bench-secret-0123456789abcdef"

SEED = """
INSERT INTO students (id, email, full_name, language, created_at)
  SELECT n, 'student' || n || '@school.example', 'Student ' || n, 'ru', now() FROM generate_series(1, :students) n;
INSERT INTO lesson_runs (student_id, lesson_id, status, step_index, points, context, started_at, last_activity_at,
                         finished_at, check_failures)
  SELECT n, 'git-basics', 'completed', 7, 100, '{"answers": ["git log"]}', now() - interval '3 days',
         now() - interval '2 days', now() - interval '2 days', 0 FROM generate_series(1, :students) n;
INSERT INTO lesson_runs (student_id, lesson_id, status, step_index, points, context, started_at, last_activity_at,
                         check_failures, next_check_at)
  SELECT n, 'zulip-basics', 'active', n % 6, 10 * (n % 6), '{}', now() - interval '1 day', now(), 0, now()
  FROM generate_series(1, :students) n;
INSERT INTO step_results (run_id, step_id, points, attempts, passed_at, source)
  SELECT r.id, 'step-' || s, 15, 1 + (r.id + s) % 3, now(), 'chat'
  FROM lesson_runs r, generate_series(1, 7) s WHERE r.status = 'completed';
INSERT INTO inbound_messages (message_id, student_id, content, received_at)
  SELECT 'zulip:' || (n * 100 + m), n, 'a message the student wrote, number ' || m || ' — with some text', now()
  FROM generate_series(1, :students) n, generate_series(1, 20) m;
INSERT INTO outbox (kind, student_id, payload, status, attempts, next_attempt_at, created_at, sent_at, ambiguous)
  SELECT 'chat_reply', n, json_build_object('to', 'student' || n || '@school.example',
         'content', '**Step ' || m || ' of 7.** A reply from the bot that explains what to do next, in two sentences.'),
         'sent', 1, now(), now(), now(), false
  FROM generate_series(1, :students) n, generate_series(1, 20) m;
"""


def timed(what: str, action: Callable[[], T]) -> tuple[T, float]:
    print(f"{what} …", flush=True)
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def run(command: list[str], env: dict[str, str], **kwargs: Any) -> None:
    subprocess.run(command, env=env, check=True, capture_output=True, **kwargs)


def bench(students: int) -> None:
    from app import create_app
    from app.backup.service import BackupFolder, create_backup, libpq_environment, restore_backup, row_counts, upload_backup
    from app.db import db
    from app.google.tokens import store_authorization
    from app.settings import Settings
    from tests.google_server import GoogleTestServer
    from tests.pg import PgCluster

    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-backup-") as tmp:
        root = Path(tmp)
        identity = root / "ops.key"
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
        public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True).stdout.strip()
        cluster = PgCluster(durable=True).start()
        try:
            url = cluster.create_database("lessonbot")
            with GoogleTestServer(storage_dir=root / "drive") as gs, gs.trust_ca():
                client_id, secret = gs.add_oauth_client(gs.add_project("lessonbot"))
                scopes = ["https://www.googleapis.com/auth/drive"]
                refresh = gs.issue_refresh_token(client_id, "ops@example.com", scopes)
                settings = Settings(_env_file=None, database_url=url, secret_key=SECRET, internal_token=SECRET,  # type: ignore[call-arg]
                                    git_hook_secret=SECRET, git_root=root / "git", backup_dir=root / "backups",
                                    backup_age_recipients=(public,), google_client_id=client_id,
                                    google_client_secret=secret, google_api_endpoint=gs.url, google_token_uri=gs.token_uri)
                app = create_app(settings)
                with app.app_context():
                    from flask_migrate import upgrade

                    upgrade()
                    _, seed_s = timed(f"seeding {students} students", lambda: _seed(students))
                    store_authorization(settings, "ops@example.com", scopes, refresh)
                    db.session.commit()
                    before = row_counts(url)
                    env = libpq_environment(url)
                    _, plain_dump_s = timed("plain pg_dump -Fc (baseline)",
                                            lambda: run(["pg_dump", "-Fc", "-f", str(root / "plain.dump")], env))
                    plain_size = (root / "plain.dump").stat().st_size
                    backup, backup_s = timed("backup: pg_dump | age", lambda: create_backup(settings, db.engine))
                    folder = gs.add_drive_file("backups")
                    with_drive = settings.model_copy(update={"backup_drive_folder_id": folder})
                    _, upload_s = timed("verified upload to Drive",
                                        lambda: upload_backup(with_drive, BackupFolder(settings.backup_dir), backup))
                plain_db = cluster.create_database("plain_restore")
                _, plain_restore_s = timed("plain pg_restore (baseline)", lambda: run(
                    ["pg_restore", "--no-owner", "--single-transaction", "-d", "plain_restore", str(root / "plain.dump")],
                    libpq_environment(plain_db)))
                target = cluster.create_database("restored")
                report, restore_s = timed("restore: age --decrypt | pg_restore", lambda: restore_backup(
                    settings, settings.backup_dir / backup.name, identity, target))
        finally:
            cluster.stop()
    print_report(students, seed_s, (plain_size, backup.size), plain_dump_s, backup_s, upload_s, plain_restore_s,
                 restore_s, before == report.rows, before)


def _seed(students: int) -> None:
    from app.db import db

    for statement in SEED.split(";"):
        if statement.strip():
            db.session.execute(sa.text(statement), {"students": students})
    db.session.execute(sa.text("SELECT setval('students_id_seq', (SELECT max(id) FROM students))"))
    db.session.commit()


def print_report(students: int, seed_s: float, sizes: tuple[int, int], plain_dump_s: float, backup_s: float, upload_s: float,
                 plain_restore_s: float, restore_s: float, same_rows: bool, rows: dict[str, int]) -> None:
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {students} students, {sum(rows.values())} rows "
          f"({', '.join(f'{t} {n}' for t, n in sorted(rows.items()) if n)}); seeded in {seed_s:.1f} s")
    print(f"plain dump {sizes[0] / 1e6:.1f} MB, encrypted backup {sizes[1] / 1e6:.1f} MB")
    print(f"{'':34}{'seconds':>9}{'ratio to plain':>16}")
    print(f"{'plain pg_dump -Fc':34}{plain_dump_s:9.2f}{1.0:16.2f}")
    print(f"{'backup (pg_dump | age)':34}{backup_s:9.2f}{backup_s / plain_dump_s:16.2f}")
    print(f"{'verified upload to Drive':34}{upload_s:9.2f}")
    print(f"{'plain pg_restore':34}{plain_restore_s:9.2f}{1.0:16.2f}")
    print(f"{'restore (age -d | pg_restore)':34}{restore_s:9.2f}{restore_s / plain_restore_s:16.2f}")
    print(f"restored rows equal the original: {'yes' if same_rows else 'NO'}")
    if not same_rows:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000, help="students to seed (default 10 000)")
    bench(parser.parse_args().students)


if __name__ == "__main__":
    main()
