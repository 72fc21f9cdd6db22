"""Benchmark: POST /internal/messages beside the fair baseline and a bare Flask "ok".

Every app runs under the same uWSGI and nginx settings on loopback, against a durable
PostgreSQL (fsync and synchronous_commit on, as production), loaded by wrk with a bounded
duration:

- Lessonbot's ``/internal/messages``, one message per request (the console's path, and the
  receiver's for a message on its own);
- Lessonbot's ``/internal/messages/batch``, 10 messages per request (what the receiver sends
  for one long-poll), counted in messages per second;
- the fair baseline (bench/fair_app.py): the same durable work done the simplest way with
  plain psycopg2 — store the message, upsert the student, queue a reply row, commit;
- a bare Flask "ok": the cost of uWSGI, nginx and Flask alone.

Prints messages/s, p50 and p99 for each (its best of ``--rounds`` rounds, every other round run in
reverse order) and the ratios to the fair and the bare baseline, and the message path's ratio to
the fair baseline in every round.
Run: ``make bench`` (or ``.venv/bin/python -m bench.core_http``). Target (issue 11): the
message path >= 0.6x the fair baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.settings import PROJECT_ROOT
from tests.pg import PgCluster, free_port
from tests.stack import wait_answering

BENCH_DIR = Path(__file__).resolve().parent
TOKEN = "bench-internal-token-0123456789"
UWSGI_INI = """\
[uwsgi]
module = {module}
socket = {socket}
chmod-socket = 666
master = true
processes = {processes}
threads = {threads}
lazy-apps = true
need-app = true
die-on-term = true
harakiri = 30
listen = 1024
disable-logging = true
stats = {stats}
pidfile = {pidfile}
"""
NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/client_body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  client_max_body_size 256k;
  keepalive_requests 100000;
  upstream core {{ server unix:{core_socket}; }}
  upstream bare {{ server unix:{bare_socket}; }}
  upstream fair {{ server unix:{fair_socket}; }}
  server {{ listen 127.0.0.1:{core_port}; location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass core; }} }}
  server {{ listen 127.0.0.1:{bare_port}; location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass bare; }} }}
  server {{ listen 127.0.0.1:{fair_port}; location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass fair; }} }}
}}
"""


@dataclass
class Figures:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(name: str, output: str) -> Figures:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Figures(name, rps, _ms(*p50.groups()), _ms(*p99.groups()), errors)  # type: ignore[union-attr]


def wrk(url: str, connections: int, seconds: int, tag: str, batch: int = 1) -> str:
    env = {**os.environ, "LESSONBOT_INTERNAL_TOKEN": TOKEN, "BENCH_RUN_TAG": tag, "BENCH_BATCH": str(batch)}
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
               "-s", str(BENCH_DIR / "messages.lua"), url]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout


@contextmanager
def stack(root: Path, database_url: str, processes: int, threads: int = 1) -> Iterator[tuple[str, str, str]]:
    """uWSGI (core, fair baseline, bare) behind one nginx; yields the three base URLs."""
    core_port, bare_port, fair_port = free_port(), free_port(), free_port()
    env = app_env(database_url, root)
    uwsgi = str(Path(sys.executable).parent / "uwsgi")
    servers: list[subprocess.Popen[bytes]] = []
    conf = root / "nginx.conf"
    nginx_started = False
    try:  # everything started is stopped again, also when a later step fails
        for name, module in (("core", "app.wsgi:app"), ("bare", "bench.bare_app:app"), ("fair", "bench.fair_app:app")):
            ini = root / f"{name}.ini"
            ini.write_text(UWSGI_INI.format(module=module, socket=root / f"{name}.sock", processes=processes,
                                            threads=threads, stats=root / f"{name}.stats",
                                            pidfile=root / f"{name}.pid"))
            log = open(root / f"{name}-uwsgi.log", "w")  # noqa: SIM115 - closed with the process
            servers.append(subprocess.Popen([uwsgi, "--ini", str(ini)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log))
        conf.write_text(NGINX_CONF.format(root=root, core_socket=root / "core.sock", bare_socket=root / "bare.sock",
                                          fair_socket=root / "fair.sock", core_port=core_port, bare_port=bare_port,
                                          fair_port=fair_port))
        subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(root)], check=True)
        subprocess.run(["nginx", "-c", str(conf), "-p", str(root)], check=True)
        nginx_started = True
        core, bare, fair = (f"http://127.0.0.1:{port}" for port in (core_port, bare_port, fair_port))
        wait_answering(f"{core}/health", timeout=30)
        wait_answering(f"{bare}/ok", timeout=30)
        wait_answering(f"{fair}/ok", timeout=30)
        yield core, bare, fair
    finally:
        if nginx_started:
            subprocess.run(["nginx", "-c", str(conf), "-p", str(root), "-s", "stop"], check=False)
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=30)


def app_env(database_url: str, root: Path) -> dict[str, str]:
    """The environment of every Lessonbot process in a benchmark (nothing read from .env)."""
    (root / "empty.env").write_text("")
    return {**os.environ, "DATABASE_URL": database_url, "LESSONBOT_SECRET_KEY": "bench-secret-key-0123456789",
            "LESSONBOT_INTERNAL_TOKEN": TOKEN, "LESSONBOT_GIT_HOOK_SECRET": "bench-hook-secret-0123456789",
            "LESSONBOT_ENV_FILE": str(root / "empty.env"), "LESSONBOT_GIT_ROOT": str(root / "git"),
            "LESSONBOT_LOG_LEVEL": "WARNING", "LESSONBOT_DEFAULT_LANGUAGE": "en", "PYTHONPATH": str(PROJECT_ROOT)}


def migrate(database_url: str, root: Path) -> None:
    subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=PROJECT_ROOT, env=app_env(database_url, root),
                   check=True, capture_output=True)


def report(rows: list[tuple[Figures, float]], connections: int) -> None:
    """Each row: its figures and the messages one request carries."""
    print(f"\nuWSGI + nginx on loopback, durable PostgreSQL, {connections} connections (each endpoint's best round)")
    print(f"{'endpoint':<34}{'messages/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'/ fair':>8}{'/ bare':>8}")
    fair = next(f.requests_per_second for f, _ in rows if f.name.startswith("fair"))
    bare = next(f.requests_per_second for f, _ in rows if f.name.startswith("bare"))
    for figures, per_request in rows:
        rate = figures.requests_per_second * per_request
        print(f"{figures.name:<34}{rate:>11.0f}{figures.p50_ms:>9.2f}{figures.p99_ms:>9.2f}{figures.errors:>8}"
              f"{rate / fair:>8.2f}{rate / bare:>8.2f}")
    print("target: the message path >= 0.60 of the fair baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="Measured seconds per endpoint (bounded load).")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4, help="uWSGI worker processes for both apps.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per uWSGI process for both apps.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of measurements; each endpoint's best is compared.")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed; run `make bench` (it installs nginx-light and wrk)")
    root = Path(tempfile.mkdtemp(prefix="lessonbot-bench-"))
    root.chmod(0o755)
    cluster = PgCluster(durable=True).start()
    try:
        url = cluster.create_database("lessonbot_bench")
        migrate(url, root)
        with stack(root, url, args.processes, args.threads) as (core_url, bare_url, fair_url):
            runs = [("/internal/messages", core_url, 1), ("/internal/messages/batch (10 each)", core_url, 10),
                    ("fair baseline (plain psycopg2)", fair_url, 1), ("bare Flask ok", bare_url, 1)]
            print(f"warming up ({args.connections} connections, 3 s each)…", flush=True)
            # Each run its own message ids: a run that met the ids an earlier one stored would be timing
            # duplicates (the fair baseline answers those after one statement).
            for index, (_, base, batch) in enumerate(runs):
                wrk(base, args.connections, 3, f"warmup{index}", batch)
            print(f"measuring {args.seconds} s each, {args.rounds} round(s), every other round in reverse order…",
                  flush=True)
            measured: dict[str, list[Figures]] = {name: [] for name, _, _ in runs}
            for number in range(args.rounds):
                order = list(enumerate(runs)) if number % 2 == 0 else list(reversed(list(enumerate(runs))))
                for index, (name, base, batch) in order:
                    output = wrk(base, args.connections, args.seconds, f"measure{number}-{index}", batch)
                    measured[name].append(parse_wrk(name, output))
        # This shared machine's speed drifts by tens of per cent within minutes: each endpoint's best round is
        # compared, and the message path's ratio to the fair baseline is printed for every round too.
        rows = [(max(measured[name], key=lambda figures: figures.requests_per_second), float(batch))
                for name, _, batch in runs]
        report(rows, args.connections)
        single, fair = measured[runs[0][0]], measured[runs[2][0]]
        print("the message path / fair, per round: " + ", ".join(
            f"{ours.requests_per_second / theirs.requests_per_second:.2f}" for ours, theirs in zip(single, fair, strict=True)))
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
