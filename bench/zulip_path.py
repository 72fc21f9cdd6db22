"""Benchmarks of the Zulip path: Zulip → receiver → core (uWSGI + nginx) → outbox → dispatcher → Zulip.

Three scenarios, each printing its figures and the ratio to its target or baseline:

- burst: N distinct students each send `start git-basics` within one second (no rate
  limit); the time until each has the first step: p50, p99, max (target: p99 <= 2 s), and
  the CPU this took, read from /proc: Lessonbot's own (receiver, core uWSGI, the worker that
  delivers replies, PostgreSQL) per student (target: <= 5 ms) apart from the harness's (the
  Zulip test server and the students' clients), which share the machine.
- echo: the `zulip_bots` framework's echo bot (`run_message_handler_for_bot`) and our
  receiver + core + dispatcher under the same load, in turn, for several rounds; messages
  per second of each, the ratio of each side's best round, and each side's CPU per message
  with how busy the machine was (the harness shares it). Target: ours >= 1.0x while also
  persisting every message and reply.
- ratelimit: the server allows the bot 200 requests per minute; the delivered reply
  rate against that limit (target: within 5 %) and that nothing is lost.

Run: ``make bench`` or ``.venv/bin/python -m bench.zulip_path [--scenario burst|echo|ratelimit]``.
Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import zulip

from app.settings import PROJECT_ROOT
from bench.core_http import app_env, migrate, stack
from tests.pg import PgCluster
from tests.zulip_server.models import User
from tests.zulip_server.spawn import SpawnedZulipTestServer

SENDER_PROCESSES = 4
Ready = TypeVar("Ready")  # what a caller's on_ready gives back (its meters' first readings)
# Threads sending in each of them: a thread per student (250 per process) made the clients' CPU swing from
# 4 to 26 s per 1000 sends between runs on a busy 2-CPU machine; 4 x 32 sends can still be under way at once.
SENDER_THREADS = 32


# ---- students sending -------------------------------------------------------------------

def _send_slice(site: str, students: list[tuple[int, str, str]], bot_email: str, ready: Any, go: Any, start_at: Any,
                spread: float, total: int, first: int, contents: list[str], results: Any) -> None:
    """In a child process: clients built (each asks for the server settings) before the clock starts, then,
    once the parent says go, each send at its own moment. This process has every ``SENDER_PROCESSES``-th
    student from ``first`` on, and so sends over the whole spread, as the other processes do."""
    clients = [(user_id, zulip.Client(email=email, api_key=key, site=site)) for user_id, email, key in students]
    ready.put(None)
    go.wait()
    lock = threading.Lock()
    sent: list[tuple[int, float]] = []

    def send(index: int, user_id: int, client: zulip.Client) -> None:
        delay = start_at.value + spread * (first + index * SENDER_PROCESSES) / total - time.time()
        if delay > 0:
            time.sleep(delay)
        for content in contents:
            moment = time.time()
            assert client.send_message({"type": "private", "to": [bot_email], "content": content})["result"] == "success"
            with lock:
                sent.append((user_id, moment))

    with ThreadPoolExecutor(max_workers=SENDER_THREADS) as pool:  # taken in the order of their moments
        for _ in pool.map(lambda job: send(job[0], *job[1]), enumerate(clients)):
            pass
    results.put(sent)


def send_from_students(zs: SpawnedZulipTestServer, students: list[User], bot: User, contents: list[str],
                       spread: float, on_ready: Callable[[], Ready]) -> tuple[dict[int, float], Ready]:
    """Every student sends `contents` (in order); their first sends are spread evenly over `spread` seconds.

    Returns each student's first send time, and what ``on_ready`` returned. Senders run in
    several processes so that the clients are not the bottleneck. Every client is built first
    (each asks the server for its settings); then ``on_ready`` runs (it waits for the machine
    to settle and starts the meters), and only then does the first student send.
    """
    context = multiprocessing.get_context("fork")
    results, ready, go, start_at = context.Queue(), context.Queue(), context.Event(), context.Value("d", 0.0)
    slices = [students[i::SENDER_PROCESSES] for i in range(SENDER_PROCESSES)]
    processes = []
    for first, part in enumerate(slices):
        rows = [(user.id, user.email, user.api_key) for user in part]
        process = context.Process(target=_send_slice, args=(zs.url, rows, bot.email, ready, go, start_at, spread,
                                                            len(students), first, contents, results))
        process.start()
        processes.append(process)
    for _ in processes:
        ready.get(timeout=600)
    readings = on_ready()
    start_at.value = time.time() + 0.2
    go.set()
    first_send: dict[int, float] = {}
    for _ in processes:
        for user_id, moment in results.get(timeout=600):
            first_send[user_id] = min(moment, first_send.get(user_id, moment))
    for process in processes:
        process.join(timeout=60)
    return first_send, readings


def newest_message_id(zs: SpawnedZulipTestServer) -> int:
    """The id of the newest message the server holds (0: none): a round counts only what comes after it."""
    return max((int(message["id"]) for message in zs.messages()), default=0)


def wait_for_replies(zs: SpawnedZulipTestServer, bot: User, expected: dict[int, int], timeout: float,
                     matches: Callable[[str], bool] = lambda _: True,
                     after: int = 0) -> dict[int, list[tuple[float, str]]]:
    """Poll the server until each student has `expected[id]` matching replies from `bot` sent after message `after`."""
    replies: dict[int, list[tuple[float, str]]] = {user_id: [] for user_id in expected}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in zs.messages(after):
            after = max(after, int(message["id"]))
            if message["sender_id"] != bot.id or not matches(message["content"]):
                continue
            for user_id in message["recipient_ids"]:
                if user_id in replies:
                    replies[user_id].append((float(message["stored_at"]), message["content"]))
        if all(len(replies[user_id]) >= count for user_id, count in expected.items()):
            return replies
        time.sleep(0.1)
    missing = sum(1 for user_id, count in expected.items() if len(replies[user_id]) < count)
    raise SystemExit(f"timed out: {missing} student(s) still waiting for replies after {timeout:g} s")


# ---- CPU, from /proc -------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: its parent, and the CPU seconds it and its reaped children used."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
        utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
        found[int(entry.name)] = (int(fields[1]), (utime + stime + cutime + cstime) / CLOCK_TICKS)
    return found


def _tree_seconds(root: int, processes: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of a process tree: a live process counts its own time, a gone one is in its parent's."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += processes.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


@dataclass
class CpuMeter:
    """The CPU that named process trees use over a window, each read from /proc at its start and end."""

    lessonbot: dict[str, int]  # the system under test: component name → the root pid of its tree
    others: dict[str, int]     # the rest, reported apart

    def sample(self) -> dict[str, float]:
        processes = _processes()
        figures = {name: _tree_seconds(pid, processes) for name, pid in {**self.lessonbot, **self.others}.items()}
        own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        # This process is the students' clients: it polls for replies, and its sender processes end (are reaped)
        # within the window. The servers it started are children too, but they end after the window.
        figures["clients"] = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
        return figures

    def settled_sample(self, quiet: float = 0.05, step: float = 0.5, timeout: float = 30.0) -> dict[str, float]:
        """A sample taken once every named process tree is quiet (together under ``quiet`` of one CPU over
        ``step`` seconds): a worker still starting up, or the server still answering the clients' start-up
        calls, would otherwise be measured as part of the run, and would slow the students' sends."""
        deadline = time.monotonic() + timeout
        before = self.sample()
        while time.monotonic() < deadline:
            time.sleep(step)
            now = self.sample()
            if sum(now[name] - before[name] for name in {**self.lessonbot, **self.others}) < quiet * step:
                return now
            before = now
        print(f"(the processes under test never settled within {timeout:g} s; measuring anyway)")
        return self.sample()

    def report(self, start: dict[str, float], end: dict[str, float], count: int, per: str = "student",
               target_ms: float | None = 5.0) -> None:
        used = {name: end[name] - start[name] for name in end}
        ours = sum(used[name] for name in self.lessonbot)
        target = f" (target <= {target_ms:g} ms: ratio {ours / count * 1000 / target_ms:.2f})" if target_ms else ""
        print("CPU over the window (user + system, from /proc):")
        print("  under test: " + ", ".join(f"{name} {used[name]:.2f} s" for name in self.lessonbot)
              + f" = {ours:.2f} s, {ours / count * 1000:.2f} ms per {per}{target}")
        print("  apart: " + ", ".join(f"{name} {used[name]:.2f} s" for name in [*self.others, "clients"]))


# ---- SQL, from pg_stat_statements -------------------------------------------------------

def reset_statements(database_url: str) -> None:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("SELECT pg_stat_statements_reset()")


def report_statements(database_url: str, count: int, per: str, top: int = 10) -> None:
    """The statements PostgreSQL ran since the reset: calls and execution time per ``per``, the costliest first."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT calls, total_exec_time, query FROM pg_stat_statements "
                       "WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC")
        rows = cursor.fetchall()
    calls = sum(row[0] for row in rows)
    print(f"SQL (pg_stat_statements): {calls / count:.1f} statements and "
          f"{sum(row[1] for row in rows) / count:.3f} ms of execution per {per}; the costliest:")
    for row_calls, total, query in rows[:top]:
        print(f"  {row_calls / count:6.2f} calls {total / count:7.3f} ms  {' '.join(query.split())[:100]}")


def report_stages(database_url: str, students: list[User], sent: dict[int, float],
                  replies: dict[int, list[tuple[float, str]]], since: float) -> None:
    """Where each student's reply spent its time: from the send to the start of the core's transaction
    (the receiver's long-poll and hand-over; the database's stamp), and from there until Zulip stored the
    reply (the transaction, the outbox and the dispatcher's send)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT s.email, max(extract(epoch FROM i.received_at)) FROM students s "
                       "JOIN inbound_messages i ON i.student_id = s.id WHERE i.received_at >= to_timestamp(%s) "
                       "GROUP BY s.email", (since,))
        reached = {email: float(moment) for email, moment in cursor.fetchall()}
    stages: dict[str, list[float]] = {"send → the core's transaction": [], "transaction → reply stored in Zulip": []}
    for student in students:
        if student.email in reached and replies.get(student.id):
            stages["send → the core's transaction"].append(reached[student.email] - sent[student.id])
            stages["transaction → reply stored in Zulip"].append(replies[student.id][-1][0] - reached[student.email])
    print("where the time went (p50 / p99 / max, s):")
    for name, values in stages.items():
        if values:
            print(f"  {name:<38} {statistics.median(values):6.2f} {_percentile(values, 0.99):6.2f} {max(values):6.2f}")

# ---- the Lessonbot stack ---------------------------------------------------------------

WORKERS = ("app.workers.receiver", "app.workers.poller", "app.workers.dispatcher")  # the dispatcher delivers the replies


@contextmanager
def lessonbot(zs: SpawnedZulipTestServer, root: Path, database_url: str, core_url: str, rate_per_minute: float,
              log_name: str) -> Iterator[dict[str, int]]:
    """Receiver, poller and dispatcher as supervisor runs them; yields their pids by name, once the
    receiver's own event queue exists (so that no student sends before it listens)."""
    assert zs.bot is not None
    env = app_env(database_url, root) | {
        "LESSONBOT_ZULIP_SITE": zs.url, "LESSONBOT_ZULIP_EMAIL": zs.bot.email, "LESSONBOT_ZULIP_API_KEY": zs.bot.api_key,
        "LESSONBOT_CORE_URL": core_url, "LESSONBOT_ZULIP_RATE_PER_MINUTE": str(rate_per_minute),
        "LESSONBOT_POLL_INTERVAL_SECONDS": "1", "LESSONBOT_DEFAULT_LANGUAGE": "en", "LESSONBOT_LOG_LEVEL": "INFO",
    }
    processes = {}
    queues_before = _queues(zs, zs.bot)
    for module in WORKERS:
        name = module.rsplit(".", 1)[1]
        log = open(root / f"{log_name}-{name}.log", "ab")  # noqa: SIM115 - owned by the process
        processes[name] = subprocess.Popen([sys.executable, "-m", module], cwd=PROJECT_ROOT, env=env, stdout=log,
                                           stderr=log)
    try:
        _wait_for_new_queue(zs, zs.bot, queues_before, "Lessonbot's receiver")
        yield {name: process.pid for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=60)


def _queues(zs: SpawnedZulipTestServer, bot: User) -> set[str]:
    return set(zs.state(queues_of=bot).get("queues", []))


def _wait_for_new_queue(zs: SpawnedZulipTestServer, bot: User, before: set[str], who: str, timeout: float = 60) -> None:
    """Until the bot has an event queue that was not there ``before``: the process just started has registered.

    Any queue would not do: a bot stopped earlier (the echo bot, or a previous scenario's
    receiver) leaves its queue behind until it idles out.
    """
    deadline = time.monotonic() + timeout
    while not _queues(zs, bot) - before:
        if time.monotonic() > deadline:
            raise SystemExit(f"{who} never registered an event queue")
        time.sleep(0.2)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# ---- scenarios ---------------------------------------------------------------------------

def burst(zs: SpawnedZulipTestServer, root: Path, database_url: str, core_url: str, servers: dict[str, int]) -> None:
    assert zs.bot is not None
    students = zs.students
    with lessonbot(zs, root, database_url, core_url, rate_per_minute=1_000_000, log_name="burst") as workers:
        meter = CpuMeter(lessonbot={**workers, "core uWSGI": servers["core uWSGI"], "PostgreSQL": servers["PostgreSQL"]},
                         others={"nginx": servers["nginx"], "Zulip test server": zs.pid})
        reset_statements(database_url)
        before = newest_message_id(zs)
        sent, start = send_from_students(zs, students, zs.bot, ["start git-basics"], spread=1.0,
                                         on_ready=meter.settled_sample)
        replies = wait_for_replies(zs, zs.bot, {s.id: 1 for s in students}, timeout=60 + len(students) / 10,
                                   matches=lambda text: "Step 1 of 7" in text, after=before)
        end = meter.sample()
    latencies = [replies[user_id][0][0] - sent[user_id] for user_id in sent]
    window = max(sent.values()) - min(sent.values())
    print(f"\nburst: {len(students)} students sent `start git-basics` within {window:.2f} s")
    print(f"time to the first step: p50 {statistics.median(latencies):.2f} s, p99 {_percentile(latencies, 0.99):.2f} s, "
          f"max {max(latencies):.2f} s  (target p99 <= 2 s: ratio {_percentile(latencies, 0.99) / 2.0:.2f} of budget)")
    meter.report(start, end, len(students))
    report_statements(database_url, len(students), "student")


def _windows(sent: dict[int, float], replies: dict[int, list[tuple[float, str]]]) -> tuple[float, float, int]:
    """How long the sends took, how long after the first send the last reply came, and how many replies
    were stored while the students were still sending."""
    first, last_send = min(sent.values()), max(sent.values())
    moments = [moment for items in replies.values() for moment, _ in items]
    return last_send - first, max(moments) - first, sum(moment <= last_send for moment in moments)


def _throughput(sent: dict[int, float], replies: dict[int, list[tuple[float, str]]]) -> float:
    first = min(sent.values())
    last = max(moment for items in replies.values() for moment, _ in items)
    count = sum(len(items) for items in replies.values())
    return count / (last - first)


@dataclass
class EchoRound:
    """One side's run: its throughput, how long the sends took, when the last reply came, and the CPU it took."""

    name: str
    rate: float
    sending: float
    replying: float
    early: int  # replies stored while the students were still sending
    meter: CpuMeter
    start: dict[str, float]
    end: dict[str, float]
    busy: float  # of the machine's CPUs, over the window
    calls: dict[str, int]  # the bot's requests to Zulip over the window, by method and path
    stages: Callable[[], None] | None = None  # prints where the time went (Lessonbot's rounds: it keeps stamps)

    def report(self, count: int) -> None:
        print(f"\n{self.name}: {self.rate:.0f} messages/s; the sends took {self.sending:.2f} s ({self.early} replies "
              f"stored meanwhile), the last reply came {self.replying:.2f} s after the first send; the machine's "
              f"{os.cpu_count()} CPUs {self.busy:.0%} busy")
        self.meter.report(self.start, self.end, count, per="message", target_ms=None)
        print("the bot's calls to Zulip per message: " + ", ".join(
            f"{call} {number / count:.3f}" for call, number in sorted(self.calls.items(), key=lambda item: -item[1])))
        if self.stages is not None:
            self.stages()


def _echo_round(zs: SpawnedZulipTestServer, name: str, students: list[User], bot: User, content: str, reply_prefix: str,
                meter: CpuMeter, database_url: str | None = None) -> EchoRound:
    before = newest_message_id(zs)  # the rounds before left replies of the same kind
    calls_before = _calls(zs, bot)
    sent, (start, jiffies_start, began) = send_from_students(
        zs, students, bot, [content], spread=1.0,
        on_ready=lambda: (meter.settled_sample(), _cpu_jiffies(), time.time()))
    replies = wait_for_replies(zs, bot, {s.id: 1 for s in students}, 300, lambda text: text.startswith(reply_prefix),
                               after=before)
    end, jiffies_end = meter.sample(), _cpu_jiffies()
    calls = {call: number - calls_before.get(call, 0) for call, number in _calls(zs, bot).items()}
    busy = (jiffies_end[0] - jiffies_start[0]) / max(jiffies_end[1] - jiffies_start[1], 1)
    stages = (lambda: report_stages(database_url, students, sent, replies, began)) if database_url else None
    return EchoRound(name, _throughput(sent, replies), *_windows(sent, replies), meter, start, end, busy,
                     {call: number for call, number in calls.items() if number}, stages)


def _calls(zs: SpawnedZulipTestServer, bot: User) -> dict[str, int]:
    """The bot's requests so far, by method and path, as the server counted them."""
    asked = zs.state(queues_of=bot, requests=True)["requests"]
    return {call.replace("/api/v1/", ""): number for call, number in asked.items()}


def _cpu_jiffies() -> tuple[int, int]:
    """From /proc/stat: the jiffies all CPUs have been busy, and in all, since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def echo(zs: SpawnedZulipTestServer, root: Path, database_url: str, core_url: str, servers: dict[str, int],
         count: int, rounds: int) -> None:
    """Both bots in turn, ``rounds`` times: this shared machine's noise moves either side by tens of per cent
    between runs, so each side's best round is compared (and every round printed)."""
    assert zs.bot is not None
    students = zs.students[:count]
    theirs: list[EchoRound] = []
    ours: list[EchoRound] = []
    for number in range(rounds):
        echo_bot = zs.add_user(f"echo-bot-{number}@example.com", "Echo Bot", bot=True)
        rc = zs.write_zuliprc(echo_bot, root / f"echo-{number}.zuliprc")
        queues_before = _queues(zs, echo_bot)
        process = subprocess.Popen([sys.executable, "-m", "bench.echo_bot_unlimited", str(rc)], cwd=PROJECT_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=open(root / "echo-bot.log", "ab"))  # noqa: SIM115
        try:
            _wait_for_new_queue(zs, echo_bot, queues_before, "the echo bot")
            meter = CpuMeter(lessonbot={"echo bot": process.pid}, others={"Zulip test server": zs.pid})
            theirs.append(_echo_round(zs, f"round {number + 1}, zulip_bots echo bot", students, echo_bot, "ping",
                                      "echo:", meter))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        with lessonbot(zs, root, database_url, core_url, rate_per_minute=1_000_000, log_name="echo") as workers:
            meter = CpuMeter(lessonbot={**workers, "core uWSGI": servers["core uWSGI"], "PostgreSQL": servers["PostgreSQL"]},
                             others={"nginx": servers["nginx"], "Zulip test server": zs.pid})
            reset_statements(database_url)
            ours.append(_echo_round(zs, f"round {number + 1}, Lessonbot", students, zs.bot, "lessons", "Lessons:", meter,
                                    database_url))
        theirs[-1].report(len(students))
        ours[-1].report(len(students))
    report_statements(database_url, len(students), "message (Lessonbot's last round)")
    best_theirs, best_ours = max(r.rate for r in theirs), max(r.rate for r in ours)
    print(f"\nside by side, {len(students)} students each sending one message within 1 s, best of {rounds} rounds each:")
    print(f"zulip_bots echo bot (no storage; its built-in 20-per-5-s limit lifted): {best_theirs:8.0f} messages/s")
    print(f"Lessonbot (message, run state and reply stored):                       {best_ours:8.0f} messages/s")
    print("ratio per round: " + ", ".join(f"{o.rate / t.rate:.2f}" for t, o in zip(theirs, ours, strict=True)))
    print(f"ratio ours / zulip_bots (best rounds): {best_ours / best_theirs:.2f}  (target >= 1.0)")


def ratelimit(zs: SpawnedZulipTestServer, root: Path, database_url: str, core_url: str, minutes: float) -> None:
    assert zs.bot is not None
    limit = 200
    total = int(limit * minutes)
    students = zs.students[:40]
    per_student = total // len(students)
    zs.set_rate_limit(limit, 60.0)
    with lessonbot(zs, root, database_url, core_url, rate_per_minute=limit, log_name="ratelimit"):
        contents = [f"r{n}" for n in range(per_student)]
        before = newest_message_id(zs)
        send_from_students(zs, students, zs.bot, contents, spread=1.0, on_ready=lambda: None)
        replies = wait_for_replies(zs, zs.bot, {s.id: per_student for s in students}, timeout=minutes * 60 * 2 + 120,
                                   matches=lambda text: "“r" in text, after=before)
    zs.clear_rate_limit()
    moments = sorted(moment for items in replies.values() for moment, _ in items)
    rate = (len(moments) - 1) / (moments[-1] - moments[0]) * 60
    quoted = [[text.split("“")[1].split("”")[0] for _, text in items] for items in replies.values()]
    lost_or_doubled = sum(1 for tokens in quoted if tokens != contents)
    print(f"\nrate limit {limit}/min: {len(moments)} replies over {(moments[-1] - moments[0]) / 60:.1f} min")
    print(f"delivered {rate:.1f} replies/min; ratio to the limit {rate / limit:.3f}  (target 0.95-1.05)")
    print(f"students with a lost, repeated or reordered reply: {lost_or_doubled} of {len(students)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["all", "burst", "echo", "ratelimit"], default="all")
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=2.0, help="Length of the rate-limited run.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of the echo comparison (each side's best is compared).")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory and its logs.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lessonbot-zulip-bench-"))
    root.chmod(0o755)
    cluster = PgCluster(durable=True, settings={"shared_preload_libraries": "pg_stat_statements"}).start()
    try:
        url = cluster.create_database("lessonbot_bench")
        migrate(url, root)
        with stack(root, url, processes=4) as (core_url, _, _), \
                SpawnedZulipTestServer(students=args.students, heartbeat_seconds=30) as zs:
            assert cluster.process is not None
            servers = {"core uWSGI": int((root / "core.pid").read_text()), "PostgreSQL": cluster.process.pid,
                       "nginx": int((root / "nginx.pid").read_text())}
            if args.scenario in ("all", "burst"):
                burst(zs, root, url, core_url, servers)
            if args.scenario in ("all", "echo"):
                echo(zs, root, url, core_url, servers, min(args.students, 1000), args.rounds)
            if args.scenario in ("all", "ratelimit"):
                ratelimit(zs, root, url, core_url, args.minutes)
    finally:
        cluster.stop()
        if args.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
