"""The outbox dispatcher: per-student order across dispatchers, isolation of a failing item, pausing a platform."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
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


def _run_until_drained(dispatch: Callable[[], None], threads: int, stop: StopFlag) -> None:
    """`threads` dispatchers side by side until nothing is pending (at most a minute), then stopped."""
    running = [threading.Thread(target=dispatch) for _ in range(threads)]
    for thread in running:
        thread.start()
    deadline = time.monotonic() + 60
    while _pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.stop()
    for thread in running:
        thread.join(timeout=10)
    assert _pending() == 0


def _assert_each_once_in_order(delivered: list[tuple[int | None, int]], queues: list[int | None], per_queue: int) -> None:
    expected = [(queue, n) for queue in queues for n in range(per_queue)]
    assert len(delivered) == len(expected) and set(delivered) == set(expected)  # each once
    for queue in queues:
        assert [n for q, n in delivered if q == queue] == list(range(per_queue)), queue


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

    _run_until_drained(dispatch, 2, stop)
    _assert_each_once_in_order(handler.delivered, [*students, None], 12)
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


class Batched(Recording):
    """A handler the dispatcher serves in batches, marking each attempt in flight itself; it can watch the batch."""

    name = "batched"
    in_flight = timedelta(seconds=20)
    attempt_timeout = timedelta(seconds=15)

    def __init__(self, *, watch: object = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.watch = watch

    def deliver_claimed(self, item: OutboxItem) -> Outcome:
        if callable(self.watch):
            self.watch(item)
        return self.deliver(item)


def _other_connection(app: Flask) -> sa.engine.Connection:
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def test_a_batch_is_marked_in_flight_and_its_queues_held_before_any_item_is_sent(app: Flask) -> None:
    students = _students(5)
    for student_id in students:
        _queue(student_id, 2)
    db.session.commit()
    seen: list[tuple[int, int, int]] = []
    with _other_connection(app) as other:
        def watch(item: OutboxItem) -> None:  # what another session sees while the batch is out
            in_flight = other.scalar(sa.text("SELECT count(*) FROM outbox WHERE ambiguous AND attempts = 1 "
                                             "AND status = 'pending' AND next_attempt_at > now()"))
            queue_free = other.scalar(sa.text("SELECT pg_try_advisory_lock(7399, :s)"), {"s": item.student_id})
            seen.append((int(in_flight), int(bool(queue_free)), int(item.attempts)))

        handler = Batched(watch=watch)
        with Dispatcher([handler]) as dispatcher:
            assert dispatcher._deliver_batch(handler, 50) == 5  # one head per student's queue
            assert dispatcher._deliver_batch(handler, 50) == 5
        assert seen[:5] == [(5, 0, 0)] * 5  # all five committed in flight before the first send; queues held
        assert all(other.scalar(sa.text("SELECT pg_try_advisory_lock(7399, :s)"), {"s": s}) for s in students)
    assert _pending() == 0
    stored = list(db.session.scalars(sa.select(OutboxItem)))
    assert {(item.attempts, item.ambiguous) for item in stored} == {(1, False)}
    for student_id in students:
        assert [n for s, n in handler.delivered if s == student_id] == [0, 1]


def test_two_batched_dispatchers_keep_each_students_order_and_deliver_each_item_once(app: Flask) -> None:
    students = _students(8)
    for student_id in [*students, None]:
        _queue(student_id, 10)
    db.session.commit()
    handler = Batched(retry_first=0.3, seconds=0.001)
    stop = StopFlag()

    def dispatch() -> None:
        with app.app_context(), Dispatcher([handler], stop) as dispatcher:
            while not stop.stopping:
                if not dispatcher.run_once():
                    stop.wait(0.01)

    _run_until_drained(dispatch, 3, stop)
    _assert_each_once_in_order(handler.delivered, [*students, None], 10)


def test_a_crash_in_a_batch_keeps_its_in_flight_mark_and_the_others_go(app: Flask) -> None:
    first, second, third = _students(3)
    _queue(first, 1, prefix="first")
    _queue(second, 2, prefix="second")
    _queue(third, 1, prefix="third")
    db.session.commit()
    handler = Batched(crash={"second 0"})
    with Dispatcher([handler]) as dispatcher:
        assert dispatcher.deliver_due() == 3  # the crashed queue waits; the others are done
    assert sorted(handler.delivered) == sorted([(first, 0), (third, 0)])
    items = {item.payload["content"]: item for item in db.session.scalars(sa.select(OutboxItem))}
    crashed = items["second 0"]
    assert crashed.status == OutboxStatus.PENDING and crashed.attempts == 1 and crashed.ambiguous
    assert "RuntimeError: cannot deliver second 0" in str(crashed.last_error) and crashed.next_attempt_at > utcnow()
    assert items["second 1"].attempts == 0 and items["second 1"].status == OutboxStatus.PENDING


def test_a_paused_handler_gives_the_rest_of_its_batch_back_unchanged(app: Flask) -> None:
    students = _students(3)
    for student_id in students:
        _queue(student_id, 1)
    db.session.commit()
    handler = Batched()
    handler.unavailable = "the server refused the bot's key"
    with Dispatcher([handler]) as dispatcher:
        assert dispatcher.deliver_due() == 1 and dispatcher.errors() == {"batched": "the server refused the bot's key"}
        stored = list(db.session.scalars(sa.select(OutboxItem)))
        assert {(item.attempts, item.ambiguous, item.next_attempt_at <= utcnow()) for item in stored} == {(0, False, True)}
        handler.unavailable = None
        dispatcher._pauses["batched"].until = 0.0
        assert dispatcher.deliver_due() == 3
    assert _pending() == 0 and len(handler.delivered) == 3


def _end_backend(dispatcher: Dispatcher, other: sa.engine.Connection) -> int:
    """Terminate the dispatcher's connection from the server's side, as a restart or failover would."""
    connection = dispatcher._batch_claims().connection()
    backend = int(connection.scalar(sa.text("SELECT pg_backend_pid()")))
    assert other.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    time.sleep(0.2)
    return backend


def test_a_dispatcher_whose_connection_the_server_ended_connects_again_and_goes_on(app: Flask) -> None:
    [student] = _students(1)
    _queue(student, 2)
    db.session.commit()
    handler = Batched()
    with Dispatcher([handler]) as dispatcher, _other_connection(app) as other:
        assert dispatcher._deliver_batch(handler, 50) == 1
        _end_backend(dispatcher, other)
        assert dispatcher.next_due_in() == 0.0  # the idle wait's question, answered on a new connection
        ended = _end_backend(dispatcher, other)
        assert dispatcher.deliver_due() == 1  # no error: the claim found its connection dead and made a new one
        assert dispatcher._batch_claims().connection().scalar(sa.text("SELECT pg_backend_pid()")) != ended
    assert _pending() == 0 and [n for _, n in handler.delivered] == [0, 1]


def test_an_outcome_the_database_refuses_costs_only_its_own_item(app: Flask) -> None:
    students = _students(3)
    for student_id in students:
        _queue(student_id, 1)
    db.session.commit()

    def spoil(item: OutboxItem) -> None:
        if item.student_id == students[1]:
            item.external_id = "x" * 200  # longer than the column: the batch's UPDATE is refused

    handler = Batched(watch=spoil)
    with Dispatcher([handler]) as dispatcher:
        assert dispatcher.deliver_due() == 3
    stored = {item.student_id: item for item in db.session.scalars(sa.select(OutboxItem))}
    assert stored[students[0]].status == stored[students[2]].status == OutboxStatus.SENT
    refused = stored[students[1]]  # its in-flight mark stands: it is looked up once the lease ends
    assert refused.status == OutboxStatus.PENDING and refused.ambiguous and refused.attempts == 1
    assert refused.next_attempt_at > utcnow() + timedelta(seconds=10)
