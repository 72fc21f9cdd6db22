"""The outbox dispatcher: per-student order across dispatchers, isolation of a failing item, pausing a platform."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from app.db import db, utcnow
from app.loop import StopFlag
from app.outbox.dispatcher import Dispatcher, Outcome, Unavailable
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.students.models import Student


class Recording:
    """A handler that records what it delivered; it can be told to retry, crash or find its platform away."""

    name = "recording"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.CHAT_REPLY,)
    ordered = True
    lock_class = 7399

    def __init__(self, *, retry_first: float = 0.0, crash: set[str] | None = None, seconds: float = 0.0) -> None:
        self.delivered: list[tuple[int | None, int]] = []
        self.attempted: list[str] = []
        self.retry_first, self.crash, self.seconds = retry_first, crash or set(), seconds
        self.unavailable: str | None = None
        self.lock = threading.Lock()
        self.random = random.Random(11)

    def deliver(self, item: OutboxItem) -> Outcome:
        content = str(item.payload["content"])
        with self.lock:
            self.attempted.append(content)
            retry = item.attempts == 0 and self.random.random() < self.retry_first
        if self.unavailable:
            raise Unavailable(self.unavailable)
        if content in self.crash:
            raise RuntimeError(f"cannot deliver {content}")
        item.attempts += 1
        time.sleep(self.seconds)
        if retry:
            item.next_attempt_at = utcnow()  # due again at once: only the order holds it back
            return Outcome.RETRY
        item.mark_sent()
        with self.lock:
            self.delivered.append((item.student_id, int(content.split()[-1])))
        return Outcome.SENT


def _students(count: int) -> list[int]:
    students = [Student(email=f"s{n}@example.com", full_name=f"Student {n}") for n in range(count)]
    db.session.add_all(students)
    db.session.flush()
    return [student.id for student in students]


def _queue(student_id: int | None, count: int, prefix: str = "reply") -> None:
    for number in range(count):
        db.session.add(OutboxItem(kind=OutboxKind.CHAT_REPLY, student_id=student_id, status=OutboxStatus.PENDING,
                                  payload={"to": "x@example.com", "content": f"{prefix} {number}"},
                                  next_attempt_at=utcnow() - timedelta(seconds=1)))


def _pending() -> int:
    db.session.rollback()
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem).where(
        OutboxItem.status == OutboxStatus.PENDING)) or 0)


def test_two_dispatchers_keep_each_students_order_and_deliver_each_item_once(app: Flask) -> None:
    students = _students(6)
    for student_id in [*students, None]:
        _queue(student_id, 12)
    db.session.commit()
    handler = Recording(retry_first=0.3, seconds=0.002)
    stop = StopFlag()

    def dispatch() -> None:
        with app.app_context():
            dispatcher = Dispatcher([handler], stop)
            try:
                while not stop.stopping:
                    if not dispatcher.run_once():
                        stop.wait(0.01)
            finally:
                dispatcher.close()

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while _pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.stop()
    for thread in threads:
        thread.join(timeout=10)

    assert _pending() == 0
    expected = [(s, n) for s in [*students, None] for n in range(12)]
    assert len(handler.delivered) == len(expected) and set(handler.delivered) == set(expected)  # each once
    for student_id in [*students, None]:
        assert [n for s, n in handler.delivered if s == student_id] == list(range(12)), student_id
    assert len(handler.attempted) > len(handler.delivered)  # some were retried, and held the later ones back


def test_an_item_whose_handler_raises_is_rescheduled_and_the_next_students_item_goes(app: Flask) -> None:
    first, second = _students(2)
    _queue(first, 2, prefix="first")
    _queue(second, 1, prefix="second")
    db.session.commit()
    handler = Recording(crash={"first 0"})
    dispatcher = Dispatcher([handler])

    assert dispatcher.deliver_due() == 2
    dispatcher.close()
    assert handler.delivered == [(second, 0)]  # the crash blocked no other student
    items = {item.payload["content"]: item for item in db.session.scalars(sa.select(OutboxItem))}
    crashed = items["first 0"]
    assert crashed.status == OutboxStatus.PENDING and crashed.attempts == 1
    assert "RuntimeError: cannot deliver first 0" in str(crashed.last_error) and crashed.next_attempt_at > utcnow()
    assert items["first 1"].status == OutboxStatus.PENDING and items["first 1"].attempts == 0  # its order is kept


def test_a_platform_that_refuses_us_pauses_the_handler_and_charges_no_item(app: Flask) -> None:
    [student] = _students(1)
    _queue(student, 3)
    db.session.commit()
    handler = Recording()
    handler.unavailable = "the server refused the bot's key"
    dispatcher = Dispatcher([handler])

    assert dispatcher.deliver_due() == 1  # one try, then the handler is paused
    assert dispatcher.deliver_due() == 0 and handler.attempted == ["reply 0"]
    assert dispatcher.errors() == {"recording": "the server refused the bot's key"}
    assert {item.attempts for item in db.session.scalars(sa.select(OutboxItem))} == {0}

    handler.unavailable = None
    dispatcher._pauses["recording"].until = 0.0  # the pause is over
    assert dispatcher.deliver_due() == 3 and dispatcher.errors() == {}
    dispatcher.close()
    assert [n for _, n in handler.delivered] == [0, 1, 2]
