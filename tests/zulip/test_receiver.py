"""The receiver and the reply sender in-process, against the Zulip test server and the live core."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from flask import Flask

from app import create_app
from app.chat.models import InboundMessage
from app.db import db
from app.loop import StopFlag
from app.outbox.models import OutboxItem, OutboxStatus
from app.outbox.service import queue_reply
from app.settings import Settings
from app.students.service import get_or_create_student
from app.workers.dispatcher import DispatcherThreads
from app.zulip import receiver as receiver_module
from app.zulip.connect import connect
from app.zulip.models import ReceiverState
from app.zulip.receiver import BATCH_BYTES, BATCH_MESSAGES, HANDOVER_LANES, CoreClient, CoreFailed, Receiver, batches, lanes
from tests.helpers import zulip_dispatcher
from tests.zulip.conftest import wait_until
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


def _settings(app: Flask) -> Settings:
    return app.extensions["lessonbot.settings"]


def _receiver(app: Flask, stop: StopFlag | None = None) -> Receiver:
    settings = _settings(app)
    stop = stop or StopFlag()
    core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
    receiver = Receiver(connect(settings), connect(settings), core, stop)
    receiver.load_progress()
    receiver.register_and_backfill()
    return receiver


def _dm(zs: ZulipTestServer, student: User, bot: User, content: str) -> None:
    result = zs.client(student).send_message({"type": "private", "to": [bot.email], "content": content})
    assert result["result"] == "success", result


def _replies(zs: ZulipTestServer, student: User, bot: User) -> list[str]:
    return [message.content for message in zs.messages_to(student) if message.sender.id == bot.id]


def test_a_direct_message_is_answered_once(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("ann@example.com", "Ann Student")
    receiver = _receiver(zulip_app)
    _dm(zs, student, bot, "lessons")
    assert receiver.run_once() is True
    delivery = zulip_dispatcher(_settings(zulip_app))
    assert delivery.deliver_due() == 1
    assert delivery.deliver_due() == 0
    replies = _replies(zs, student, bot)
    assert len(replies) == 1 and "git-basics" in replies[0]
    item = db.session.query(OutboxItem).one()
    assert item.status == OutboxStatus.SENT and item.external_id is not None


def test_ignores_itself_other_bots_and_unmentioned_stream_talk(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("ben@example.com", "Ben Student")
    other_bot = zs.add_user("other-bot@example.com", "Other Bot", bot=True)
    zs.add_stream("general", subscribers=[student, bot])
    receiver = _receiver(zulip_app)
    zs.client(bot).send_message({"type": "private", "to": [student.email], "content": "from myself"})
    _dm(zs, other_bot, bot, "help")
    zs.client(student).send_message({"type": "stream", "to": "general", "topic": "t", "content": "just chatting"})
    zs.client(student).send_message({"type": "stream", "to": "general", "topic": "t", "content": "@**Lessonbot** lessons"})
    receiver.run_once()
    zulip_dispatcher(_settings(zulip_app)).deliver_due()
    assert [reply.split("\n")[0] for reply in _replies(zs, student, bot)] == ["from myself", "Lessons:"]
    assert _replies(zs, other_bot, bot) == []


def test_restart_backfills_what_came_while_it_was_away(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("cat@example.com", "Cat Student")
    first = _receiver(zulip_app)
    _dm(zs, student, bot, "first message")
    first.run_once()
    first.close()
    for n in range(3):
        _dm(zs, student, bot, f"while away {n}")
    zs.expire_queues()
    second = _receiver(zulip_app)  # a new process would start exactly like this
    _dm(zs, student, bot, "after restart")
    second.run_once()
    delivery = zulip_dispatcher(_settings(zulip_app))
    delivery.deliver_due()
    texts = _replies(zs, student, bot)
    assert [text.split("“")[1].split("”")[0] for text in texts] == [
        "first message", "while away 0", "while away 1", "while away 2", "after restart"]


def test_expired_queue_is_registered_again_and_nothing_is_missed(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("dan@example.com", "Dan Student")
    receiver = _receiver(zulip_app)
    old_queue = receiver.queue_id
    _dm(zs, student, bot, "one")
    zs.expire_queues()
    assert receiver.run_once() is False  # BAD_EVENT_QUEUE_ID: forget the queue
    receiver.run_once()  # registers, backfills "one"
    assert receiver.queue_id not in (None, old_queue)
    zulip_dispatcher(_settings(zulip_app)).deliver_due()
    assert len(_replies(zs, student, bot)) == 1


def test_second_receiver_waits_for_the_first(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                             caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(zulip_app)
    core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
    first = Receiver(connect(settings), connect(settings), core, StopFlag())
    assert first.wait_for_lock()
    stop = StopFlag()
    second = Receiver(connect(settings), connect(settings), core, stop)
    threading.Timer(1.0, stop.stop).start()
    with caplog.at_level(logging.INFO):
        assert second.wait_for_lock() is False
    assert "another process holds the lock" in caplog.text
    first.close()
    third = Receiver(connect(settings), connect(settings), core, StopFlag())
    assert third.wait_for_lock()
    third.close()


def test_uncertain_send_is_never_doubled(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("eve@example.com", "Eve Student")
    receiver = _receiver(zulip_app)
    _dm(zs, student, bot, "help")
    _dm(zs, student, bot, "help")
    receiver.run_once()
    delivery = zulip_dispatcher(_settings(zulip_app))
    zs.faults.drop_next(1, endpoint="POST /messages", after=True)  # stored, but the answer never comes
    delivery.deliver_due()
    first = db.session.query(OutboxItem).order_by(OutboxItem.id).first()
    assert first is not None and first.ambiguous and first.status == OutboxStatus.PENDING
    first.next_attempt_at = first.created_at
    db.session.commit()
    delivery.deliver_due()
    assert len(_replies(zs, student, bot)) == 2  # two identical `help` replies, each exactly once
    statuses = [(item.status, item.ambiguous) for item in db.session.query(OutboxItem).order_by(OutboxItem.id)]
    assert statuses == [(OutboxStatus.SENT, False), (OutboxStatus.SENT, False)]


def test_a_reply_that_keeps_failing_is_marked_failed_with_its_reason(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                      runner) -> None:  # type: ignore[no-untyped-def]
    student = zs.add_user("fay@example.com", "Fay Student")
    receiver = _receiver(zulip_app)
    _dm(zs, student, bot, "help")
    receiver.run_once()
    zulip_app.extensions["lessonbot.settings"] = _settings(zulip_app).model_copy(update={"zulip_reply_max_attempts": 2})
    delivery = zulip_dispatcher(_settings(zulip_app))
    zs.faults.set_error_rate(1.0, 503, endpoint="POST /messages")
    for _ in range(2):
        delivery.deliver_due()
        for item in db.session.query(OutboxItem):
            item.next_attempt_at = item.created_at
        db.session.commit()
    item = db.session.query(OutboxItem).one()
    assert item.status == OutboxStatus.FAILED and "503" in (item.last_error or "")
    zs.faults.clear()
    assert delivery.deliver_due() == 0 and _replies(zs, student, bot) == []
    listed = runner.invoke(args=["outbox", "list", "--failed"])
    assert listed.exit_code == 0 and "failed" in listed.output and "503" in listed.output


def test_rate_limit_is_honoured_by_every_caller(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = zs.add_user("gus@example.com", "Gus Student")
    receiver = _receiver(zulip_app)
    for n in range(6):
        _dm(zs, student, bot, f"n{n}")
    receiver.run_once()
    zs.set_rate_limit(3, 2.0)
    delivery = zulip_dispatcher(_settings(zulip_app))
    started = time.monotonic()
    while len(_replies(zs, student, bot)) < 6 and time.monotonic() - started < 20:
        delivery.deliver_due()
        time.sleep(0.05)
    texts = [text.split("“")[1].split("”")[0] for text in _replies(zs, student, bot)]
    assert texts == [f"n{n}" for n in range(6)]
    assert time.monotonic() - started >= 2.0  # it had to wait for the window


def test_reply_leaves_within_a_second_of_its_commit(zulip_app: Flask, zs: ZulipTestServer, bot: User, client) -> None:  # type: ignore[no-untyped-def]
    student = zs.add_user("hal@example.com", "Hal Student")
    settings = _settings(zulip_app)
    stop = StopFlag()
    idle = settings.model_copy(update={"poll_interval_seconds": 30.0, "dispatcher_threads": 1})  # only NOTIFY wakes it in time
    dispatchers = DispatcherThreads(zulip_app, idle, zulip_dispatcher(settings).handlers, stop)
    dispatchers.start()
    try:
        time.sleep(1.0)  # let it go idle on LISTEN
        latencies = []
        for n in range(5):
            body = {"message_id": f"zulip:{1000 + n}", "sender_email": student.email, "sender_id": student.id,
                    "content": f"ping {n}"}
            started = time.monotonic()
            response = client.post("/internal/messages", data=json.dumps(body), content_type="application/json",
                                   headers={"Authorization": f"Bearer {settings.internal_token.get_secret_value()}"})
            assert response.status_code == 200
            wait_until(lambda n=n: len(_replies(zs, student, bot)) > n, 5, "the reply")
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 1.0, latencies
    finally:
        stop.stop()
        dispatchers.join(timeout=10)


def test_eight_dispatcher_threads_each_get_their_connections(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    """Each dispatcher thread holds its LISTEN, its claims' connection and its session's at once. With the
    pool of old (5 + 10), the fifth thread on waited 30 s for a connection, and eight never delivered."""
    students = [zs.add_user(f"pool{n}@example.com", f"Pool {n}") for n in range(8)]
    settings = _settings(zulip_app).model_copy(update={"dispatcher_threads": 8})
    app = create_app(settings, TESTING=True)
    stop = StopFlag()
    dispatchers = DispatcherThreads(app, settings, zulip_dispatcher(settings).handlers, stop)
    dispatchers.start()
    try:
        time.sleep(1.0)  # every thread idle on LISTEN, its claims' connection open
        with app.app_context():
            for student in students:
                queue_reply(get_or_create_student(student.email, student.full_name, student.id, "en"), "hello")
            db.session.commit()
        wait_until(lambda: all(_replies(zs, student, bot) == ["hello"] for student in students), 10, "every reply")
        assert dispatchers.status()["alive"] == 8
    finally:
        stop.stop()
        dispatchers.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


def test_what_one_long_poll_brings_goes_to_the_core_in_one_batch(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    students = [zs.add_user(f"b{n}@example.com", f"Student {n}") for n in range(5)]
    receiver = _receiver(zulip_app)
    batches: list[int] = []
    real = receiver.core.deliver_batch

    def counted(bodies: list[dict[str, object]]) -> list[str]:  # the real call, counted
        batches.append(len(bodies))
        return real(bodies)

    monkeypatch.setattr(receiver.core, "deliver_batch", counted)
    for student in students:
        _dm(zs, student, bot, "lang en")
        _dm(zs, student, bot, "lessons")
    while sum(batches) < 10:
        receiver.run_once()
    assert batches == [10]  # one request, one transaction
    delivery = zulip_dispatcher(_settings(zulip_app))
    while delivery.deliver_due():
        pass
    for student in students:  # each student's two answers, in order: the second already in English
        replies = _replies(zs, student, bot)
        assert len(replies) == 2 and replies[1].startswith("Lessons")


def test_a_long_poll_larger_than_a_batch_is_split_in_order() -> None:
    messages = [{"id": n, "sender_email": "a@example.com", "sender_id": 1, "content": "x"} for n in range(120)]
    chunks = batches(messages)
    assert [len(chunk) for chunk in chunks] == [BATCH_MESSAGES, BATCH_MESSAGES, 20]
    assert [m["id"] for chunk in chunks for m in chunk] == list(range(120))
    big = [{"id": n, "sender_email": "a@example.com", "sender_id": 1, "content": "я" * 20_000} for n in range(12)]
    sizes = [sum(len(json.dumps(m, ensure_ascii=False).encode()) for m in chunk) for chunk in batches(big)]
    assert all(size <= BATCH_BYTES for size in sizes) and sum(len(chunk) for chunk in batches(big)) == 12


def test_more_than_a_batch_is_split_into_lanes_that_keep_each_senders_messages_together_in_order() -> None:
    small = [{"id": n, "sender_id": n % 7, "sender_email": f"s{n % 7}@example.com"} for n in range(BATCH_MESSAGES)]
    assert lanes(small) == [small]  # one batch's worth: one request
    assert lanes([]) == []
    # 300 messages from 30 senders, one of whom sent 60: interleaved as a long-poll brings them
    messages = [{"id": n, "sender_id": 0 if n % 5 == 0 else 1 + n % 29, "sender_email": "x@example.com"}
                for n in range(300)]
    split = lanes(messages)
    assert len(split) == HANDOVER_LANES
    assert sorted(m["id"] for lane in split for m in lane) == list(range(300))  # nothing lost, nothing doubled
    for lane in split:
        assert [m["id"] for m in lane] == sorted(m["id"] for m in lane)  # oldest first
    owners = {m["sender_id"]: index for index, lane in enumerate(split) for m in lane}
    for index, lane in enumerate(split):
        assert all(owners[m["sender_id"]] == index for m in lane)  # a sender in exactly one lane
    assert max(map(len, split)) - min(map(len, split)) <= 60  # balanced up to the largest sender's share
    # without a Zulip id, the email keeps a sender together
    by_email = [{"id": n, "sender_id": None, "sender_email": f"e{n % 3}@example.com"} for n in range(60)]
    assert sorted(len(lane) for lane in lanes(by_email)) == [20, 20, 20]


def _run_until_stored(receiver: Receiver, count: int) -> None:
    for _ in range(10):
        receiver.run_once()
        db.session.rollback()
        if db.session.query(InboundMessage).count() == count:
            return
    assert db.session.query(InboundMessage).count() == count


def test_a_backlog_goes_to_the_core_in_lanes_at_once_and_every_student_is_answered_in_order(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-poll bringing more than a batch: the lanes' requests are in flight together (a barrier that
    sequential hand-overs could never pass), one lane's failed batch goes one by one without holding the
    others, and every student gets both answers, the second after the first."""
    students = [zs.add_user(f"lane{n}@example.com", f"Lane {n}") for n in range(40)]
    receiver = _receiver(zulip_app)
    real = receiver.core.deliver_batch
    together = threading.Barrier(2, timeout=10)
    calls: list[tuple[str, list[str]]] = []
    lock = threading.Lock()

    def counted(bodies: list[dict[str, object]]) -> list[str]:  # the real call, recorded
        with lock:
            calls.append((threading.current_thread().name, [str(body["sender_email"]) for body in bodies]))
            first_two = len(calls) <= 2
        if first_two:
            together.wait()  # two lanes' first requests at the same moment
        if any(body["sender_email"] == students[0].email for body in bodies):
            raise CoreFailed("HTTP 500: this batch broke")  # its messages then go one by one
        return real(bodies)

    monkeypatch.setattr(receiver.core, "deliver_batch", counted)
    for student in students:
        _dm(zs, student, bot, "lang en")
        _dm(zs, student, bot, "lessons")
    _run_until_stored(receiver, 80)
    assert any(students[0].email in senders for _, senders in calls)  # the broken batch was tried
    assert len({thread for thread, _ in calls}) > 1
    lane_of = {sender: thread for thread, senders in calls for sender in senders}
    assert all(lane_of[sender] == thread for thread, senders in calls for sender in senders)  # a student in one lane
    delivery = zulip_dispatcher(_settings(zulip_app))
    while delivery.deliver_due():
        pass
    for student in students:
        replies = _replies(zs, student, bot)
        assert len(replies) == 2 and replies[1].startswith("Lessons"), (student.email, replies)


class _RecordingEvent(threading.Event):
    """A stop flag's event whose waits are recorded (and do not sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def _saved_progress(bot: User) -> int | None:
    db.session.rollback()
    state = db.session.get(ReceiverState, bot.email)
    return None if state is None else state.last_message_id


def test_the_bots_own_replies_alone_neither_save_progress_nor_poll_again_at_once(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reply the bot sends wakes its own event queue. A long-poll that brought only those
    saves no progress (at most every PROGRESS_EVERY seconds) and the next one waits ECHO_SETTLE,
    so that it brings several; anything handed over is saved at once."""
    student = zs.add_user("ola@example.com", "Ola Student")
    stop, waits = StopFlag(), _RecordingEvent()
    stop.event = waits
    receiver = _receiver(zulip_app, stop)
    saved_at_start = _saved_progress(bot)
    own = zs.client(bot).send_message({"type": "private", "to": [student.email], "content": "my own reply"})["id"]
    assert receiver.run_once() is False
    assert receiver.last_id == own and _saved_progress(bot) == saved_at_start
    assert waits.waits == [receiver_module.ECHO_SETTLE]

    _dm(zs, student, bot, "lessons")
    assert receiver.run_once() is True
    assert _saved_progress(bot) == receiver.last_id > own
    assert waits.waits == [receiver_module.ECHO_SETTLE]  # a poll that handed something over polls again at once

    monkeypatch.setattr(receiver_module, "PROGRESS_EVERY", 0.0)
    again = zs.client(bot).send_message({"type": "private", "to": [student.email], "content": "another"})["id"]
    receiver.run_once()
    assert _saved_progress(bot) == again  # the last save is old enough: saved, though nothing was for us


def test_a_restart_after_unsaved_own_replies_hands_over_nothing_twice(zulip_app: Flask, zs: ZulipTestServer,
                                                                     bot: User) -> None:
    """Progress not saved past the bot's own replies costs a restart only a backfill that drops them again."""
    student = zs.add_user("pia@example.com", "Pia Student")
    first = _receiver(zulip_app)
    _dm(zs, student, bot, "first message")
    first.run_once()
    zulip_dispatcher(_settings(zulip_app)).deliver_due()  # the reply wakes the queue with the bot's own message
    first.run_once()
    first.close()
    zs.expire_queues()
    second = _receiver(zulip_app)
    _dm(zs, student, bot, "after restart")
    second.run_once()
    zulip_dispatcher(_settings(zulip_app)).deliver_due()
    texts = _replies(zs, student, bot)
    assert [text.split("“")[1].split("”")[0] for text in texts] == ["first message", "after restart"]


def test_the_hand_over_to_the_core_takes_no_proxy_from_the_environment(zulip_app: Flask,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The core answers loopback only: a proxy in the environment (meant for Zulip) must not carry the hand-over."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: a proxied request would fail
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = _settings(zulip_app)
    core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
    message = {"id": 4242, "sender_email": "una@example.com", "sender_full_name": "Una", "sender_id": 4242,
               "content": "lessons", "type": "private"}
    assert core.deliver_batch([receiver_module.handover_body(message)]) == ["accepted"]
    assert db.session.query(OutboxItem).count() == 1


def test_a_batch_that_failed_half_way_is_not_lost_with_its_acknowledged_events(zulip_app: Flask, zs: ZulipTestServer,
                                                                                bot: User) -> None:
    """Zulip forgets events the next long-poll acknowledges. When handing a batch over fails (here the bot list
    cannot be read for a new sender), the receiver gives its queue up: the backfill brings the batch again."""
    first, second = zs.add_user("vic@example.com", "Vic Student"), zs.add_user("wil@example.com", "Wil Student")
    receiver = _receiver(zulip_app)
    receiver.bots_loaded_at = float("-inf")  # the bot list is old (0.0 is not, on a machine up for under 10 min)
    zs.faults.fail_next(1, 500, endpoint="GET /users")
    _dm(zs, first, bot, "lessons")
    assert receiver.run_once() is False  # GET /users answered 500
    _dm(zs, second, bot, "lessons")  # a later message, so that a long-poll has something to return
    for _ in range(3):
        receiver.run_once()
    db.session.rollback()
    answered = {item.payload["to"] for item in db.session.query(OutboxItem)}  # one reply per message handed over
    assert answered == {first.email, second.email}
