"""A zulip_bots bot, run by `run_message_handler_for_bot` in a subprocess, answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import lifetime

from .models import User
from .server import ZulipTestServer

ECHO_BOT = Path(__file__).with_name("echo_bot.py")


@pytest.fixture
def echo_bot(zs: ZulipTestServer, bot: User, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """The echo bot, running against the test server until the test ends."""
    zuliprc = zs.write_zuliprc(bot, tmp_path / "zuliprc")
    process = lifetime.popen(
        [sys.executable, str(ECHO_BOT), str(zuliprc)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        zs.wait_for(lambda: zs.queue_ids(bot) or process.poll() is not None, timeout=20)
        assert process.poll() is None, process.communicate()[0]
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_echo_bot_answers_a_direct_message(zs: ZulipTestServer, alice: User, bot: User, echo_bot: subprocess.Popen[str]) -> None:
    zs.client(alice).send_message({"type": "private", "to": [bot.email], "content": "hello"})

    [reply] = zs.wait_for(lambda: zs.messages_to(alice), timeout=10)

    assert (reply.sender, reply.content) == (bot, "echo: hello")


def test_echo_bot_answers_a_mention_in_its_topic(
    zs: ZulipTestServer, alice: User, bot: User, echo_bot: subprocess.Popen[str]
) -> None:
    zs.add_stream("lessons", subscribers=[alice, bot])
    client = zs.client(alice)
    client.send_message({"type": "stream", "to": "lessons", "topic": "git", "content": "no mention, no answer"})
    client.send_message({"type": "stream", "to": "lessons", "topic": "git", "content": "@**Lessonbot** status"})

    reply = zs.wait_for(lambda: [m for m in zs.messages if m.sender == bot], timeout=10)[0]

    assert (reply.stream and reply.stream.name, reply.topic) == ("lessons", "git")
    assert reply.content == "echo: status"
    assert len(zs.messages) == 3
