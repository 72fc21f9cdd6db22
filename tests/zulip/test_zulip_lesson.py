"""A real Zulip student takes zulip-basics: every step checked through the Zulip API."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from app.db import db, utcnow
from app.loop import StopFlag
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings
from app.workers.poller import Poller
from app.zulip.connect import connect
from app.zulip.receiver import CoreClient, Receiver
from tests.helpers import zulip_dispatcher
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


class ZulipStudent:
    """A student with a real zulip.Client; each `say` goes through receiver, core and reply sender."""

    def __init__(self, app: Flask, zs: ZulipTestServer, bot: User, user: User) -> None:
        settings: Settings = app.extensions["lessonbot.settings"]
        self.zs, self.bot, self.user, self.client = zs, bot, user, zs.client(user)
        core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
        self.receiver = Receiver(connect(settings), connect(settings), core, StopFlag())
        self.receiver.load_progress()
        self.receiver.register_and_backfill()
        self.delivery = zulip_dispatcher(settings)
        self.seen = 0

    def say(self, text: str) -> str:
        assert self.client.send_message({"type": "private", "to": [self.bot.email], "content": text})["result"] == "success"
        self.receiver.run_once()
        return self.replies()

    def replies(self) -> str:
        self.delivery.deliver_due()
        mine = [m.content for m in self.zs.messages_to(self.user) if m.sender.id == self.bot.id]
        fresh, self.seen = mine[self.seen:], len(mine)
        return "\n".join(fresh)

    def post(self, content: str, topic: str = "hello") -> None:
        result = self.client.send_message({"type": "stream", "to": "sandbox", "topic": topic, "content": content})
        assert result["result"] == "success", result


def test_student_completes_zulip_basics(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    zs.add_stream("sandbox", subscribers=[bot])
    friend = zs.add_user("friend@example.com", "Friendly Person")
    student = ZulipStudent(zulip_app, zs, bot, zs.add_user("zoe@example.com", "Zoe Student"))
    assert "Step 1 of 6" in student.say("start zulip-basics")
    assert "not subscribed to #**sandbox** yet" in student.say("check")
    assert student.client.add_subscriptions([{"name": "sandbox"}])["result"] == "success"
    assert "Step 1 passed (+15)" in student.say("check")

    student.post("Hi, everyone!", topic="other")
    assert "no message from you in #**sandbox>hello**" in student.say("check")
    student.post("Hi, everyone!")
    assert "Step 2 passed (+20)" in student.say("check")
    student.post("```\ngit status\n```")
    assert "Step 3 passed (+20)" in student.say("check")
    student.post(f"Hello @**{friend.full_name}**!")
    assert "Step 4 passed (+15)" in student.say("check")

    assert "not reacted with :thumbs_up:" in student.say("check")
    latest_from_bot = [m for m in zs.messages_to(student.user) if m.sender.id == bot.id][-1]
    assert student.client.add_reaction({"message_id": latest_from_bot.id, "emoji_name": "thumbs_up"})["result"] == "success"
    assert "Step 5 passed (+15)" in student.say("check")
    assert "Not right" in student.say("backslash")
    assert "Score: 100 of 100" in student.say("`")
    run = db.session.query(LessonRun).one()
    assert run.status == RunStatus.COMPLETED and run.points == 100


def test_poller_confirms_a_zulip_step_without_being_asked(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    zs.add_stream("sandbox", subscribers=[bot])
    student = ZulipStudent(zulip_app, zs, bot, zs.add_user("yan@example.com", "Yan Student"))
    student.say("start zulip-basics")
    student.client.add_subscriptions([{"name": "sandbox"}])
    run = db.session.query(LessonRun).one()
    run.next_check_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    Poller(zulip_app.extensions["lessonbot.settings"], zulip_app.extensions["lessonbot.catalog"]).run_once()
    assert "Step 1 passed (+15)" in student.replies()


def test_unusual_messages_get_sensible_answers(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    student = ZulipStudent(zulip_app, zs, bot, zs.add_user("uma@example.com", "Uma Student"))
    student.say("start git-basics")
    cases = {
        "x" * 10_000: "I did not understand",
        "🙂🚀✨": "I did not understand “🙂🚀✨”",
        "שלום, מה שלומך?": "I did not understand",
        "**bold** and `code`\n> quoted": "I did not understand",
        "I think I should stop now": "I did not understand",
        "status": "step 1 of 7",
    }
    for text, expected in cases.items():
        assert expected in student.say(text), text
    assert db.session.query(LessonRun).one().status == RunStatus.ACTIVE  # "stop" inside a sentence stopped nothing


def test_only_real_code_blocks_real_mentions_and_the_right_emoji_count(zulip_app: Flask, zs: ZulipTestServer,
                                                                       bot: User) -> None:
    zs.add_stream("sandbox", subscribers=[bot])
    zs.add_user("friend@example.com", "Friendly Person")
    student = ZulipStudent(zulip_app, zs, bot, zs.add_user("quinn@example.com", "Quinn Student"))
    student.say("start zulip-basics")
    student.client.add_subscriptions([{"name": "sandbox"}])
    student.say("check")
    student.post("Hi, everyone!")
    assert "Step 2 passed" in student.say("check")
    student.post("```quote\nA quotation is not code\n```")
    student.post("Inline `code` is not a code block either")
    assert "has a code block" in student.say("check")
    student.post("~~~python\nprint('hello')\n~~~")
    assert "Step 3 passed" in student.say("check")
    student.post("Hello @**Nobody Real**!")  # nobody by that name: Zulip does not render it as a mention
    student.post("@**Quinn Student** talking to myself")
    assert "mentions anyone" in student.say("check")
    student.post("Hello @**Friendly Person**!")
    assert "Step 4 passed" in student.say("check")
    latest_from_bot = [m for m in zs.messages_to(student.user) if m.sender.id == bot.id][-1]
    # Zulip's web app stores 👍 under its name `+1`; the lesson asks for `thumbs_up`: the same emoji_code.
    reaction = student.client.add_reaction({"message_id": latest_from_bot.id, "emoji_name": "+1", "emoji_code": "1f44d"})
    assert reaction["result"] == "success"
    assert "Step 5 passed (+15)" in student.say("check")


def test_a_different_emoji_does_not_pass_the_reaction_step(zulip_app: Flask, zs: ZulipTestServer, bot: User) -> None:
    from app.zulip.checks import emoji_code

    assert emoji_code("thumbs_up") == emoji_code("+1") == emoji_code("👍") == "1f44d"
    assert emoji_code("heart") != emoji_code("thumbs_up")
    assert emoji_code("no_such_emoji_name") is None
