"""Zulip failure modes of the receiver and the reply sender, in-process against the Zulip test server and the live core.

Each test reproduces one way the Zulip path used to lose, double or stall messages.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from app.chat.models import InboundMessage
from app.db import db
from app.i18n import Text
from app.loop import StopFlag
from app.outbox.models import OutboxItem, OutboxStatus
from app.settings import Settings
from app.students.models import Student
from app.zulip.api import ZulipApi
from app.zulip.budget import LocalBudget
from app.zulip.connect import budget_for, connect
from app.zulip.models import DeadLetter
from app.zulip.receiver import CORE_MAX_ATTEMPTS, CoreClient, Receiver
from tests.helpers import poisoned_inbound, zulip_dispatcher
from tests.zulip.conftest import NO_LIMIT, wait_until
from tests.zulip_server.contract import ContractChecker
from tests.zulip_server.faults import Fault
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


def _settings(app: Flask) -> Settings:
    return app.extensions["lessonbot.settings"]


def _receiver(app: Flask, stop: StopFlag | None = None) -> Receiver:
    settings = _settings(app)
    core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
    api = connect(settings)
    receiver = Receiver(api, api, core, stop or StopFlag(), default_language=settings.default_language)
    receiver.load_progress()
    return receiver


def _dm(zs: ZulipTestServer, student: User, bot: User, content: str) -> None:
    result = zs.client(student).send_message({"type": "private", "to": [bot.email], "content": content})
    assert result["result"] == "success", result


def _handed_over() -> list[str]:
    """What the core received, in the order it received it."""
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage.content).order_by(InboundMessage.id)))


def _run_until(receiver: Receiver, done: Callable[[], bool], timeout: float) -> None:
    """Run the receiver's passes until ``done()`` (or the timeout: then the stop flag ends even an endless retry)."""
    timer = threading.Timer(timeout, receiver.stop.stop)
    timer.start()
    try:
        while not receiver.stop.stopping and not done():
            receiver.run_once()
    finally:
        timer.cancel()


def _replies(zs: ZulipTestServer, student: User, bot: User) -> list[str]:
    return [message.content for message in zs.messages_to(student) if message.sender.id == bot.id]


@pytest.mark.parametrize("fault", [Fault.error(500), Fault.rate_limited(0.3), Fault.drop()], ids=["500", "429", "drop"])
@pytest.mark.parametrize("endpoint", ["GET /messages", "GET /users"])
def test_a_failed_backfill_is_retried_and_loses_nothing(zulip_app: Flask, zs: ZulipTestServer, bot: User,
                                                        endpoint: str, fault: Fault) -> None:
    student = zs.add_user("bea@example.com", "Bea Student")
    first = _receiver(zulip_app)
    first.run_once()  # first start: registers, begins from now
    _dm(zs, student, bot, "before")
    first.run_once()
    first.close()
    for n in range(5):
        _dm(zs, student, bot, f"while away {n}")
    second = _receiver(zulip_app)  # a restarted receiver
    zs.faults.script([fault, fault], endpoint=endpoint)
    second.run_once()  # the backfill fails: the new queue must not be adopted
    assert second.queue_id is None
    _dm(zs, student, bot, "after restart")
    _run_until(second, lambda: "after restart" in _handed_over(), timeout=30)
    assert _handed_over() == ["before", *[f"while away {n}" for n in range(5)], "after restart"]
    assert zs.faults.count() == 2


def test_a_rate_limited_long_poll_waits_as_long_as_the_server_asked_and_replies_do_not(
        zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    receiver = _receiver(zulip_app)
    receiver.run_once()  # registered
    zs.faults.script([Fault.rate_limited(2.5)], endpoint="GET /events")
    sender_waited: list[float] = []

    def a_reply_sender() -> None:  # another caller of the same bot, as the dispatcher is
        with zulip_app.app_context():
            wait_until(lambda: zs.faults.count() >= 1, 10, "the 429")
            budget, since = budget_for(_settings(zulip_app)), time.monotonic()
            assert budget.acquire()
            sender_waited.append(time.monotonic() - since)

    sender = threading.Thread(target=a_reply_sender)
    sender.start()
    started = time.monotonic()
    receiver.run_once()  # the long-poll answers 429, retry-after 2.5 s
    receiver.run_once()
    sender.join(timeout=10)
    # Zulip counts the event queue (Tornado) apart from the other calls (Django): its 429 stops only the long-poll.
    assert sender_waited and sender_waited[0] < 1.0, f"a reply waited {sender_waited} s for the long-poll's 429"
    polls = [record.started for record in zs.request_log if record.path == "/api/v1/events" and record.method == "GET"]
    assert len(polls) >= 2
    gap = polls[-1] - polls[-2]
    assert 2.4 <= gap < 4.0, f"the next long-poll came {gap:.2f} s after the 429 (the server asked for 2.5 s)"
    assert time.monotonic() - started < 6.0


def test_every_call_takes_from_its_budget_long_poll_queue_deletion_and_client_start_included(
        zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    settings = _settings(zulip_app)
    budget, events_budget = _CountingBudget(), _CountingBudget()
    api = ZulipApi(str(settings.zulip_site), bot.email, lambda: bot.api_key, budget, events_budget)
    receiver = Receiver(api, api, CoreClient(settings.core_url, settings.internal_token.get_secret_value()), StopFlag())
    receiver.load_progress()
    receiver.run_once()   # GET /server_settings (client start), POST /register, GET /users, GET /messages x2, GET /events
    receiver.close()      # DELETE /events
    by_bot = [f"{r.method} {r.path.removeprefix('/api/v1/')}" for r in zs.request_log if r.user_id == bot.id]
    assert by_bot == [
        "GET server_settings", "POST register", "GET users", "GET messages", "GET messages", "GET events", "DELETE events"]
    on_events = sum(1 for request in by_bot if request.endswith(" events"))
    assert (budget.taken, events_budget.taken) == (len(by_bot) - on_events, on_events)


class _CountingBudget(LocalBudget):
    def __init__(self) -> None:
        super().__init__(per_minute=NO_LIMIT)
        self.taken = 0

    def acquire(self, *, final: bool = False) -> bool:
        self.taken += 1
        return super().acquire(final=final)


@pytest.fixture
def old_zs(contract: ContractChecker) -> Iterator[ZulipTestServer]:
    """A Zulip 6.2 server (feature level 165): no `dm` operator, no `is:dm`."""
    with ZulipTestServer(heartbeat_seconds=1.0, zulip_version="6.2", feature_level=165) as server:
        server.add_observer(contract)
        yield server


@pytest.fixture
def old_server_app(app: Flask, old_zs: ZulipTestServer, live_server: str) -> Iterator[tuple[Flask, User]]:
    bot = old_zs.add_user("lessonbot-bot@example.com", "Lessonbot", bot=True)
    settings: Settings = app.extensions["lessonbot.settings"]
    app.extensions["lessonbot.settings"] = settings.model_copy(update={
        "zulip_site": old_zs.url, "zulip_email": bot.email, "zulip_api_key": SecretStr(bot.api_key),
        "core_url": live_server, "poll_interval_seconds": 0.5, "zulip_rate_per_minute": NO_LIMIT})
    yield app, bot


def test_an_older_server_gets_the_narrows_it_understands(old_server_app: tuple[Flask, User],
                                                         old_zs: ZulipTestServer) -> None:
    app, bot = old_server_app
    narrows: list[list[dict[str, object]]] = []
    old_zs.add_observer(lambda exchange: narrows.append(json.loads(exchange.query["narrow"]))
                        if exchange.method == "GET" and exchange.path.endswith("/messages") and exchange.status == 200
                        else None)
    student = old_zs.add_user("olga@example.com", "Olga Student")
    first = _receiver(app)
    first.run_once()
    first.close()
    _dm(old_zs, student, bot, "help")  # while the receiver is away: it must come from the backfill
    second = _receiver(app)
    _run_until(second, lambda: _handed_over() == ["help"], timeout=15)
    assert _handed_over() == ["help"]
    assert [{"operator": "is", "operand": "private"}] in narrows
    # A reply whose send was uncertain is looked up with `pm-with` on this server.
    delivery = zulip_dispatcher(_settings(app))
    old_zs.faults.drop_next(1, endpoint="POST /messages", after=True)
    delivery.deliver_due()
    item = db.session.scalars(sa.select(OutboxItem)).one()
    assert item.ambiguous
    item.next_attempt_at = item.created_at
    db.session.commit()
    delivery.deliver_due()
    assert len(_replies(old_zs, student, bot)) == 1
    assert any(narrow[0]["operator"] == "pm-with" for narrow in narrows)


@pytest.fixture
def poisoned_core(zulip_app: Flask) -> Iterator[None]:
    """The core fails (HTTP 500) on any message containing ☠: a database trigger refuses to store it."""
    with poisoned_inbound():
        yield


def test_a_poisoned_message_becomes_a_dead_letter_and_the_rest_move_on(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, poisoned_core: None, client: FlaskClient,
        runner) -> None:  # type: ignore[no-untyped-def]
    poisoned = zs.add_user("pia@example.com", "Pia Student")
    other = zs.add_user("oli@example.com", "Oli Student")
    receiver = _receiver(zulip_app)
    receiver.run_once()
    _dm(zs, poisoned, bot, "help")
    receiver.run_once()
    _dm(zs, poisoned, bot, "☠ this one the core cannot take")
    _dm(zs, poisoned, bot, "lessons")
    _dm(zs, other, bot, "help")
    _run_until(receiver, lambda: len(_handed_over()) >= 3, timeout=40)
    assert sorted(_handed_over()) == ["help", "help", "lessons"]  # the other student was never held up

    letter = db.session.scalars(sa.select(DeadLetter)).one()
    assert letter.sender == poisoned.email and letter.content.startswith("☠") and letter.attempts == CORE_MAX_ATTEMPTS
    assert "500" in letter.reason
    student = db.session.scalars(sa.select(Student).where(Student.email == poisoned.email)).one()
    apology = Text("zulip.dead_letter").render(student.language)
    queued = [item.payload["content"] for item in db.session.scalars(
        sa.select(OutboxItem).where(OutboxItem.student_id == student.id).order_by(OutboxItem.id))]
    assert queued.count(apology) == 1 and queued.index(apology) == 1  # after the first reply, before the next

    zulip_dispatcher(_settings(zulip_app)).deliver_due()
    assert apology in _replies(zs, poisoned, bot)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem).where(
        OutboxItem.status != OutboxStatus.SENT)) == 0

    listed = runner.invoke(args=["deadletters", "list"])
    assert listed.exit_code == 0 and poisoned.email in listed.output and str(letter.message_id) in listed.output
    health = client.get("/health").get_json()
    assert health["components"]["dead_letters"] == {"status": "attention", "count": 1}


def test_a_message_from_someone_the_core_never_recorded_still_gets_the_apology(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, poisoned_core: None) -> None:
    stranger = zs.add_user("sam@example.com", "Sam Stranger")
    receiver = _receiver(zulip_app)
    receiver.run_once()
    _dm(zs, stranger, bot, "☠")
    _dm(zs, stranger, bot, "help")
    _run_until(receiver, lambda: _handed_over() == ["help"], timeout=40)
    zulip_dispatcher(_settings(zulip_app)).deliver_due()
    english, russian = Text("zulip.dead_letter").render("en"), Text("zulip.dead_letter").render("ru")
    replies = _replies(zs, stranger, bot)
    assert len(replies) == 2 and replies[0] in (english, russian)
