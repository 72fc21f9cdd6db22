"""The whole Zulip path with real worker processes: nothing lost, repeated or reordered.

Students are real zulip.Clients; the receiver and the dispatcher (which sends the replies)
run as the same processes supervisor runs; the core is the live test server.
"""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa
from flask import Flask

from app.chat.models import InboundMessage
from app.db import db
from tests.zulip.conftest import Workers, wait_until
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


def _students(zs: ZulipTestServer, count: int, tag: str) -> list[User]:
    return [zs.add_user(f"{tag}{i}@example.com", f"Student {tag}{i}") for i in range(count)]


def _send_all(zs: ZulipTestServer, bot: User, students: list[User], per_student: int, tag: str) -> dict[int, list[str]]:
    """Every student sends its messages in order, all students at once."""
    sent: dict[int, list[str]] = {student.id: [f"{tag}-{i}-{n}" for n in range(per_student)]
                                  for i, student in enumerate(students)}

    def one(student: User) -> None:
        client = zs.client(student)
        for token in sent[student.id]:
            assert client.send_message({"type": "private", "to": [bot.email], "content": token})["result"] == "success"

    threads = [threading.Thread(target=one, args=(student,)) for student in students]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return sent


def _answered(zs: ZulipTestServer, bot: User, student: User) -> list[str]:
    """The tokens the bot's replies quote back (“I did not understand “token””), in arrival order."""
    return [message.content.split("“")[1].split("”")[0]
            for message in zs.messages_to(student) if message.sender.id == bot.id and "“" in message.content]


def _all_answered(zs: ZulipTestServer, bot: User, students: list[User], expected: dict[int, list[str]]) -> bool:
    return all(len(_answered(zs, bot, student)) >= len(expected[student.id]) for student in students)


def _assert_exactly_once_in_order(zs: ZulipTestServer, bot: User, students: list[User], expected: dict[int, list[str]]) -> None:
    for student in students:
        answered = _answered(zs, bot, student)
        duplicates = [token for token, count in Counter(answered).items() if count > 1]
        assert not duplicates, f"{student.email} got repeated replies: {duplicates[:5]}"
        assert answered == expected[student.id], f"{student.email}: {answered} != {expected[student.id]}"


def _inbound_count() -> int:
    db.session.rollback()
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) or 0)


def _start(workers: Workers, zs: ZulipTestServer, bot: User) -> None:
    workers.start("receiver", "app.workers.receiver")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")


def test_receiver_killed_during_a_burst_answers_every_message_once(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                   workers: Workers) -> None:
    students = _students(zs, 25, "k")
    _start(workers, zs, bot)
    burst: dict[int, list[str]] = {}
    sender = threading.Thread(target=lambda: burst.update(_send_all(zs, bot, students, 20, "k")))
    sender.start()
    wait_until(lambda: _inbound_count() >= 80, 60, "the receiver to hand over some messages")
    workers.kill("receiver")  # SIGKILL: no chance to save anything
    workers.start("receiver", "app.workers.receiver")
    sender.join(timeout=120)
    wait_until(lambda: _all_answered(zs, bot, students, burst), 120, "every message to be answered")
    _assert_exactly_once_in_order(zs, bot, students, burst)
    assert _inbound_count() == 500


def test_receiver_away_longer_than_the_queue_timeout_misses_nothing(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                    workers: Workers) -> None:
    zs.set_queue_timeout(2.0)
    students = _students(zs, 5, "a")
    _start(workers, zs, bot)
    before = _send_all(zs, bot, students, 2, "a")
    wait_until(lambda: _all_answered(zs, bot, students, before), 30, "the first answers")
    assert workers.stop("receiver") == 0
    while_away = _send_all(zs, bot, students, 4, "b")
    wait_until(lambda: not zs.queue_ids(bot), 30, "the old event queue to expire")
    workers.start("receiver", "app.workers.receiver")
    expected = {student.id: before[student.id] + while_away[student.id] for student in students}
    wait_until(lambda: _all_answered(zs, bot, students, expected), 60, "the missed messages to be answered")
    _assert_exactly_once_in_order(zs, bot, students, expected)
    assert "backfill:" in workers.log("receiver")  # the missed messages came from GET /messages


def test_thirty_percent_failed_sends_still_deliver_every_reply_once_in_order(zulip_app: Flask, zs: ZulipTestServer,
                                                                             bot: User, workers: Workers) -> None:
    students = _students(zs, 8, "f")
    workers.start("receiver", "app.workers.receiver")
    wait_until(lambda: bool(zs.queue_ids(bot)), 60, "the receiver to register")
    expected = _send_all(zs, bot, students, 8, "f")
    wait_until(lambda: _inbound_count() == 64, 60, "the receiver to hand over every message")
    # Faults apply to every sender, so they go on once the students are done; then replies start to leave.
    zs.faults.set_error_rate(0.12, 429, endpoint="POST /messages")
    zs.faults.set_error_rate(0.10, 502, endpoint="POST /messages")
    zs.faults.set_drop_rate(0.10, endpoint="POST /messages")
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: _all_answered(zs, bot, students, expected), 120, "every reply despite the faults")
    _assert_exactly_once_in_order(zs, bot, students, expected)
    assert zs.faults.count() >= 10  # the faults really happened
