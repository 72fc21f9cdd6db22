"""The whole Zulip path under random faults: every student message answered exactly once, in order per student.

Students (real zulip.Clients) write to the bot while, at random moments, the receiver and
the dispatcher (which delivers the replies) are SIGKILLed and restarted, every endpoint answers
500s and 429s (the long-poll, ``GET /messages``, ``GET /users``, ``POST /messages``,
``POST /register``, ``GET /server_settings``, ``DELETE /events``), connections drop, event
queues expire and the bot's API key is rotated (then fixed in the env file, as an admin
would). Afterwards every message must have exactly one answer, in the order it was sent.

Size: ``LESSONBOT_FAULT_STUDENTS`` (8), ``LESSONBOT_FAULT_MESSAGES`` per student (6),
``LESSONBOT_FAULT_SECONDS`` of chaos (20) and ``LESSONBOT_FAULT_SEED``; ``make bench``
runs a bigger setting (``bench/zulip_faults.py``). The run prints its numbers.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import zulip
from flask import Flask

from app.db import db
from app.zulip.models import ReceiverState
from tests.zulip.conftest import Workers, wait_until
from tests.zulip_server.faults import Fault
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer

ENDPOINTS = ("GET /events", "GET /messages", "GET /users", "POST /messages", "POST /register",
             "GET /server_settings", "DELETE /events")


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(f"LESSONBOT_FAULT_{name}", default))


@dataclass
class Chaos:
    """What the run did to the system, for its report."""

    kills: Counter[str] = field(default_factory=Counter)
    expiries: int = 0
    rotations: int = 0
    scripted: Counter[str] = field(default_factory=Counter)
    student_retries: int = 0


def _send_until_stored(client: zulip.Client, bot: User, content: str, chaos: Chaos) -> None:
    """A student's send: faults here happen before the message is stored, so trying again is safe."""
    for _ in range(200):
        try:
            if client.send_message({"type": "private", "to": [bot.email], "content": content}).get("result") == "success":
                return
        except Exception:  # a dropped connection: the student presses Enter again
            pass
        chaos.student_retries += 1
        time.sleep(0.2)
    raise AssertionError(f"the student could not send {content!r}")


def _answered(zs: ZulipTestServer, bot: User, student: User) -> list[str]:
    """The tokens the bot's replies quote back (“I did not understand “token””), in arrival order."""
    return [message.content.split("“")[1].split("”")[0]
            for message in zs.messages_to(student) if message.sender.id == bot.id and "“" in message.content]


def _receiver_started() -> bool:
    db.session.rollback()
    return db.session.scalar(sa.select(sa.func.count()).select_from(ReceiverState)) == 1


def _short(path: str) -> str:
    return path.removeprefix("/api/v1")


def _restart_after(workers: Workers, name: str, module: str, delay: float, lock: threading.Lock) -> None:
    time.sleep(delay)
    with lock:
        if name not in workers.processes:
            workers.start(name, module)


def _disturb(zs: ZulipTestServer, workers: Workers, bot: User, action: str, rng: random.Random, chaos: Chaos,
             lock: threading.Lock) -> None:
    """One disturbance: a SIGKILL (and a restart a moment later), expired queues, or faults on a random endpoint."""
    if action.startswith("kill-"):
        name = action.removeprefix("kill-")
        with lock:
            if name not in workers.processes:
                return
            workers.kill(name)  # SIGKILL
        chaos.kills[name] += 1
        module = f"app.workers.{name}"
        threading.Thread(target=_restart_after, args=(workers, name, module, rng.uniform(0.0, 1.0), lock)).start()
    elif action == "expire":
        chaos.expiries += zs.expire_queues(bot)
    else:
        endpoint = rng.choice(ENDPOINTS)
        faults: list[Fault | None]
        if action == "500s":
            faults = [Fault.error(rng.choice([500, 502, 503]))] * rng.randint(1, 3)
        elif action == "429":
            faults = [Fault.rate_limited(round(rng.uniform(0.2, 1.5), 2))]
        else:
            faults = [Fault.drop()]
        zs.faults.script(faults, endpoint=endpoint)
        chaos.scripted[f"{action} {endpoint}"] += 1


MUST_FAIL = ("GET /events", "GET /messages", "GET /users", "POST /messages", "POST /register")


def _failed_endpoints(zs: ZulipTestServer) -> set[str]:
    return {f"{item.method} {_short(item.path)}" for item in zs.faults.injected}


def _until_each_endpoint_failed(zs: ZulipTestServer, workers: Workers, lock: threading.Lock, chaos: Chaos) -> None:
    """If the random schedule spared an endpoint, restart the receiver (its start calls them all) until it failed too."""
    for _ in range(3):
        missing = set(MUST_FAIL) - _failed_endpoints(zs)
        if not missing:
            return
        for endpoint in missing:
            zs.faults.script([Fault.error(503)], endpoint=endpoint)
        with lock:
            if "receiver" in workers.processes:
                workers.kill("receiver")
                chaos.kills["receiver"] += 1
            workers.start("receiver", "app.workers.receiver")
        deadline = time.monotonic() + 20
        while not set(MUST_FAIL) <= _failed_endpoints(zs) and time.monotonic() < deadline:
            time.sleep(0.1)


def _rotate_key(zs: ZulipTestServer, bot: User, env_file: Path, fixed_after: float, chaos: Chaos) -> None:
    rotated = zs.rotate_api_key(bot)  # from now on the old key is refused with 401
    chaos.rotations += 1
    time.sleep(fixed_after)
    env_file.write_text(f"LESSONBOT_ZULIP_API_KEY={rotated.api_key}\n")  # the admin fixes the env file


def _make_trouble(zs: ZulipTestServer, workers: Workers, bot: User, env_file: Path, rng: random.Random, chaos: Chaos,
                  lock: threading.Lock, started: float, seconds: float) -> None:
    """Each kind of trouble at least once, at a random moment; more of it at random in between."""
    planned = sorted((started + rng.uniform(0.1, 0.9) * seconds, action)
                     for action in ("rotate", "kill-receiver", "kill-dispatcher", "expire"))
    while time.monotonic() < started + seconds:
        time.sleep(rng.uniform(0.3, 1.2))
        if planned and time.monotonic() >= planned[0][0]:
            action = planned.pop(0)[1]
            if action == "rotate":
                threading.Thread(target=_rotate_key, args=(zs, bot, env_file, rng.uniform(1.0, 3.0), chaos)).start()
                continue
        else:
            action = rng.choice(["kill-receiver", "kill-dispatcher", "expire", "500s", "500s", "429", "429", "drop"])
        _disturb(zs, workers, bot, action, rng, chaos, lock)


def test_every_message_is_answered_exactly_once_in_order_through_random_faults(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers, tmp_path: Path) -> None:
    students_count, per_student = _setting("STUDENTS", 8), _setting("MESSAGES", 6)
    chaos_seconds, seed = _setting("SECONDS", 20), _setting("SEED", random.randrange(1_000_000))
    rng = random.Random(seed)
    print(f"\nfault injection: seed {seed}, {students_count} students x {per_student} messages, {chaos_seconds} s of chaos")

    env_file = tmp_path / "lessonbot.env"
    env_file.write_text(f"LESSONBOT_ZULIP_API_KEY={bot.api_key}\n")
    env_file.chmod(0o600)
    workers.env.pop("LESSONBOT_ZULIP_API_KEY")
    workers.env["LESSONBOT_ENV_FILE"] = str(env_file)
    students = [zs.add_user(f"chaos{n}@example.com", f"Chaos Student {n}") for n in range(students_count)]
    clients = {student.id: zs.client(student) for student in students}  # built before the faults start
    lock = threading.Lock()
    zs.faults.script([Fault.error(500), Fault.rate_limited(0.5)], endpoint="GET /users")  # at the very first start
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(_receiver_started, 60, "the receiver to start (its progress saved)")

    chaos = Chaos()
    expected = {student.id: [f"c{n}-{i}" for i in range(per_student)] for n, student in enumerate(students)}
    started = time.monotonic()

    def student_writes(student: User) -> None:
        pace = rng.uniform(0.5, 1.5) * chaos_seconds / per_student
        for token in expected[student.id]:
            _send_until_stored(clients[student.id], bot, token, chaos)
            time.sleep(random.uniform(0, pace))

    writers = [threading.Thread(target=student_writes, args=(student,)) for student in students]
    for writer in writers:
        writer.start()
    for endpoint in ENDPOINTS:  # each endpoint gets at least a 500 and a 429 ...
        zs.faults.script([Fault.error(500), None, Fault.rate_limited(0.5)], endpoint=endpoint)
    zs.faults.set_error_rate(0.04, 500)  # ... and some of every request, all the time
    zs.faults.set_rate_limited_rate(0.02, 0.5)
    _make_trouble(zs, workers, bot, env_file, rng, chaos, lock, started, chaos_seconds)
    for writer in writers:
        writer.join(timeout=120)
    _until_each_endpoint_failed(zs, workers, lock, chaos)
    zs.faults.clear()
    with lock:  # whatever was killed last is running again
        for name in ("receiver", "dispatcher"):
            if name not in workers.processes:
                workers.start(name, f"app.workers.{name}")
    chaos_done = time.monotonic()
    drain_deadline = time.monotonic() + 120
    while not all(len(_answered(zs, bot, s)) >= per_student for s in students) and time.monotonic() < drain_deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # a doubled reply would arrive now

    answers = {student.id: _answered(zs, bot, student) for student in students}
    total = sum(len(tokens) for tokens in expected.values())
    doubled = sum(count - 1 for tokens in answers.values() for count in Counter(tokens).values() if count > 1)
    out_of_order = sum(1 for student in students if answers[student.id] != expected[student.id])
    injected = Counter(item.fault.kind for item in zs.faults.injected)
    hit = sorted(_failed_endpoints(zs))
    print(f"fault injection: {total} messages, {sum(len(a) for a in answers.values())} answers, {doubled} doubled, "
          f"{out_of_order} student(s) out of order; drained {time.monotonic() - chaos_done:.1f} s after the chaos")
    print(f"  SIGKILLs: receiver {chaos.kills['receiver']}, dispatcher {chaos.kills['dispatcher']}; queue expiries "
          f"{chaos.expiries}; key rotations {chaos.rotations}; faults injected {dict(injected)}; "
          f"scripted bursts {sum(chaos.scripted.values())}; student re-sends {chaos.student_retries}")
    print(f"  endpoints that failed: {', '.join(hit)}")
    assert doubled == 0 and out_of_order == 0, {s.email: (expected[s.id], answers[s.id])
                                                for s in students if answers[s.id] != expected[s.id]}
    assert chaos.rotations == 1 and chaos.kills["receiver"] >= 1 and chaos.kills["dispatcher"] >= 1
    assert set(MUST_FAIL) <= set(hit)
