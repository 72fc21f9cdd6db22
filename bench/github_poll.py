"""The poller against 10 000 active GitHub runs with webhooks off: requests, the budget, CPU, noticing a change.

A durable PostgreSQL (fsync on, as production) holds 10 000 active github-basics runs, seeded
with SQL, spread over the seven polled steps; the GitHub test server, in its own process, holds
their 10 000 repositories (seeded directly through its control API). No webhook is configured.
The real poller (``Poller`` in its ``run_forever`` loop, as ``python -m app.workers.poller``
runs it, here in a thread of this process so that its ETag cache survives the warm-up) then:

- warm-up: looks at every run once (the first look has no ETag yet: a full answer each), with
  the budget lifted, ours and the test server's; a cold poller pays this once (see the note it
  prints), then the window starts with a fresh 5 000 on both;
- the measured window (``--intervals`` poll intervals): the runs fall due as ``next_check_at``
  schedules runs started together (a random point of the interval, then once per interval);
  ``--changes`` runs on the branch step get their branch pushed at moments spread over all but
  the last interval, with no webhook to tell.

It prints the requests made, 304s and full answers, requests per run per interval (target
<= 1), full answers per hour against the budget (target <= 5 000), the poller's CPU (its
thread's, from getrusage) as % of one core (target < 20 %; also per check and at the production
interval of 900 s), and the time from a push to the step passing (target: within the interval).

    .venv/bin/python -m bench.github_poll [--runs 10000] [--interval 120] [--intervals 2] [--changes 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SECRET = "bench-secret-0123456789abcdef"
PREFIX = "gb"
POLLED_STEPS = 7  # github-basics: steps 0-6 are checked on GitHub, step 7 is a question
BRANCH_STEP = 1
PRODUCTION_INTERVAL = 900.0
CI = b"on: push\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n"

SEED = """
INSERT INTO students (id, email, full_name, language, created_at)
  SELECT n + 1, 'gh' || n || '@school.example', 'Student ' || n, 'en', now() FROM generate_series(0, :runs - 1) n;
INSERT INTO lesson_runs (student_id, lesson_id, status, step_index, points, context, started_at, last_activity_at,
                         check_failures, next_check_at)
  SELECT n + 1, 'github-basics', 'active', n % :steps, 0,
         json_build_object('github_repo', :org || '/' || :prefix || '-' || n, 'github_login', :prefix || '-s' || n,
                           'github_url', :url || '/' || :org || '/' || :prefix || '-' || n),
         now(), now(), 0, now()
  FROM generate_series(0, :runs - 1) n
"""


@dataclass
class Window:
    started: float
    ended: float
    first_request: int
    cpu_seconds: float
    checks: int


def main() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("app").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=120.0, help="LESSONBOT_GITHUB_POLL_INTERVAL_SECONDS")
    parser.add_argument("--intervals", type=int, default=2, help="the measured window, in intervals")
    parser.add_argument("--changes", type=int, default=40, help="branches pushed during the window")
    parser.add_argument("--budget", type=int, default=5000, help="LESSONBOT_GITHUB_REQUESTS_PER_HOUR")
    args = parser.parse_args()
    if args.intervals < 2:
        parser.error("--intervals must be at least 2 (changes need an interval to be noticed in)")

    from tests.github_server.spawn import SpawnedGitHubTestServer
    from tests.pg import PgCluster

    cluster = PgCluster(durable=True).start()
    try:
        with SpawnedGitHubTestServer(students=0) as gh, tempfile.TemporaryDirectory(prefix="lessonbot-bench-gh-") as tmp:
            run_bench(args, cluster, gh, Path(tmp))
    finally:
        cluster.stop()


def run_bench(args: argparse.Namespace, cluster: Any, gh: Any, tmp: Path) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.db import db
    from app.settings import Settings

    key = tmp / "github-app.pem"
    key.write_bytes(gh.private_key_pem)
    os.chmod(key, 0o600)
    settings = Settings(_env_file=None, database_url=cluster.create_database("github_poll"), secret_key=SECRET,  # type: ignore[call-arg]
                        internal_token=SECRET, git_hook_secret=SECRET, git_root=tmp / "git", default_language="en",
                        github_api_url=gh.url, github_app_id=gh.app_id, github_org=gh.org,
                        github_private_key_file=key, github_poll_interval_seconds=args.interval,
                        github_requests_per_hour=args.budget)
    app = create_app(settings)
    started = time.perf_counter()
    uninvited = [n for n in range(args.runs) if n % POLLED_STEPS == 0]
    gh.seed_repos(PREFIX, args.runs, {"README.md": b"# GitHub basics\n", ".github/workflows/ci.yml": CI}, uninvited)
    print(f"GitHub test server: {args.runs} repositories seeded in {time.perf_counter() - started:.1f} s", flush=True)
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        values = {"runs": args.runs, "steps": POLLED_STEPS, "org": gh.org, "prefix": PREFIX, "url": gh.url}
        for statement in SEED.split(";"):
            db.session.execute(sa.text(statement), values)
        db.session.execute(sa.text("SELECT setval('students_id_seq', (SELECT max(id) FROM students))"))
        db.session.commit()
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        print(f"PostgreSQL: {args.runs} active runs seeded in {time.perf_counter() - started:.1f} s", flush=True)
        warm_up(app, gh, args)
        spread_first_looks(app, settings)
        window, changed = measure(app, gh, args)
        report(app, gh, args, window, changed)
        db.engine.dispose()


def warm_up(app: Any, gh: Any, args: argparse.Namespace) -> None:
    """Every run looked at once, all due now, with the budget lifted: each first look is a full answer."""
    from app.current import settings as current_settings
    from app.github.budget import Budget
    from app.github.client import shared_app
    from app.workers.poller import Poller

    github = shared_app(current_settings())
    github.budget = Budget(10_000_000)
    gh.set_rate_limit(10_000_000)  # GitHub's own 5 000 would stop a cold start halfway (see the note below)
    poller = Poller(current_settings(), app.extensions["lessonbot.catalog"])
    first = gh.state()["requests"]
    started = time.perf_counter()
    while poller.run_once():
        pass
    took = time.perf_counter() - started
    asked = gh.state()["requests"] - first
    github.budget = Budget(args.budget)  # from here on, the installation's real budget, ours and GitHub's
    gh.set_rate_limit(args.budget)
    print(f"warm-up: {asked} requests (full answers, no ETag yet) for {args.runs} runs in {took:.1f} s", flush=True)
    print(f"  a poller started cold needs as many: {asked / (args.budget * 0.9):.1f} h of the {args.budget}/h budget "
          "(less its margin) before every run has its ETag (ETags are kept in memory only)", flush=True)


def spread_first_looks(app: Any, settings: Any) -> None:
    """Each run's next look where ``next_check_at`` puts runs started together: a random point of the interval."""
    from app.db import db, utcnow
    from app.runs.service import next_check_at

    catalog, now = app.extensions["lessonbot.catalog"], utcnow()
    ids = list(db.session.scalars(sa.text("SELECT id FROM lesson_runs WHERE status = 'active'")))
    when = [next_check_at("github-basics", BRANCH_STEP, 0, catalog, settings, now) for _ in ids]
    db.session.execute(sa.text("UPDATE lesson_runs SET next_check_at = v.at, check_failures = 1 "
                               "FROM unnest(CAST(:ids AS int[]), CAST(:at AS timestamptz[])) AS v(id, at) "
                               "WHERE lesson_runs.id = v.id"), {"ids": ids, "at": when})
    db.session.commit()


def measure(app: Any, gh: Any, args: argparse.Namespace) -> tuple[Window, dict[int, float]]:
    """The poller's loop in a thread for the window; branches pushed meanwhile; its thread's CPU."""
    from app.current import settings as current_settings
    from app.loop import StopFlag, run_forever
    from app.workers.poller import Poller

    stop = StopFlag()
    poller = Poller(current_settings(), app.extensions["lessonbot.catalog"], stop)
    checks = 0
    cpu: list[float] = []

    def counted() -> bool:
        nonlocal checks
        did = poller.run_once()
        checks += 1
        return did

    def loop() -> None:
        with app.app_context():
            before = resource.getrusage(resource.RUSAGE_THREAD)
            run_forever(counted, current_settings().poll_interval_seconds, stop)
            after = resource.getrusage(resource.RUSAGE_THREAD)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    on_branch_step = [n for n in range(args.runs) if n % POLLED_STEPS == BRANCH_STEP]
    chosen = random.sample(on_branch_step, min(args.changes, len(on_branch_step)))
    duration = args.interval * args.intervals
    moments = sorted(random.uniform(0, duration - args.interval) for _ in chosen)
    first_request = gh.state()["requests"]
    started = time.time()
    thread = threading.Thread(target=loop, name="poller")
    thread.start()
    changed: dict[int, float] = {}
    for n, moment in zip(chosen, moments, strict=True):
        time.sleep(max(0.0, started + moment - time.time()))
        gh.branch(f"{gh.org}/{PREFIX}-{n}", "add-notes")
        changed[n + 1] = time.time()  # the run's id: runs were seeded in order
    time.sleep(max(0.0, started + duration - time.time()))
    stop.stop()
    thread.join()
    return Window(started, time.time(), first_request, cpu[0], checks), changed


def report(app: Any, gh: Any, args: argparse.Namespace, window: Window, changed: dict[int, float]) -> None:
    from app.db import db

    seconds = window.ended - window.started
    records = [r for r in gh.requests(window.first_request) if r[1].startswith("/repos/")]
    not_modified = sum(1 for r in records if r[2] == 304)
    full = len(records) - not_modified
    per_repo: dict[str, list[float]] = defaultdict(list)
    for _, path, _, _, at in records:
        per_repo[path.split("/")[3]].append(at)
    changed_repos = {f"{PREFIX}-{run_id - 1}" for run_id in changed}
    steady = {repo: times for repo, times in per_repo.items() if repo not in changed_repos}
    worst = max((most_in_any_interval(times, args.interval) for times in steady.values()), default=0)
    mean = len(records) / (args.runs * seconds / args.interval)
    per_hour = full / seconds * 3600
    cpu_share = window.cpu_seconds / seconds
    looked = sum(len(times) for times in per_repo.values())
    cpu_per_request_ms = window.cpu_seconds / max(looked, 1) * 1000
    production = cpu_per_request_ms / 1000 * args.runs / PRODUCTION_INTERVAL
    passed = dict(db.session.execute(sa.text(
        "SELECT run_id, passed_at FROM step_results WHERE step_id = 'branch' AND source = 'poller' "
        "AND run_id = ANY(:ids)"), {"ids": list(changed)}).all())
    delays = sorted(_epoch(passed[run_id]) - at for run_id, at in changed.items() if run_id in passed)

    print(f"\nwindow: {seconds:.0f} s = {args.intervals} intervals of {args.interval:.0f} s, {args.runs} runs, "
          f"{len(changed)} branches pushed without a webhook")
    print(f"requests: {len(records)} ({not_modified} 304s, {full} full answers) for {len(per_repo)} repositories")
    print(f"requests per run per interval: mean {mean:.2f}; most in any {args.interval:.0f} s for an unchanged run "
          f"{worst} (target <= 1: ratio {worst:.2f})")
    print(f"full answers per hour: {per_hour:.0f} vs the budget {args.budget} (ratio {per_hour / args.budget:.2f}; "
          f"the poller itself keeps to {args.budget * 0.9:.0f})")
    print(f"poller CPU: {window.cpu_seconds:.1f} s = {cpu_share:.1%} of one core (target < 20 %: ratio "
          f"{cpu_share / 0.2:.2f}); {cpu_per_request_ms:.2f} ms per request; at the production interval "
          f"({PRODUCTION_INTERVAL:.0f} s) {args.runs} runs would take {production:.1%} (ratio {production / 0.2:.2f})")
    if delays:
        print(f"push noticed after: p50 {statistics.median(delays):.1f} s, max {delays[-1]:.1f} s of the "
              f"{args.interval:.0f} s interval (ratio {delays[-1] / args.interval:.2f}); "
              f"{len(changed) - len(delays)} not noticed")
    else:
        print(f"push noticed: none of {len(changed)} (target: all within the interval)")


def most_in_any_interval(times: list[float], interval: float) -> int:
    """The most requests that fall within any stretch of ``interval`` seconds (a little slack for the loop)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= interval * 0.99:
            start += 1
        most = max(most, end - start + 1)
    return most


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


if __name__ == "__main__":
    main()
