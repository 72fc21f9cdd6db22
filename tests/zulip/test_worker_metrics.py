"""Each worker serves its own /metrics on 127.0.0.1: the dispatcher counts what reached Zulip."""

from __future__ import annotations

import urllib.request
from urllib.error import URLError

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import post_message
from tests.metrics.scrape import samples, value
from tests.pg import free_port
from tests.zulip.conftest import Workers, wait_until
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer


def _scrape(port: int, host: str = "127.0.0.1") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def _answers(port: int) -> bool:
    try:
        _scrape(port)
    except (URLError, ConnectionError):
        return False
    return True


def test_the_dispatchers_metrics_count_the_replies_it_delivered(
        zulip_app: Flask, zs: ZulipTestServer, bot: User, workers: Workers, client: FlaskClient) -> None:
    port = free_port()
    workers.env["LESSONBOT_METRICS_PORT_DISPATCHER"] = str(port)
    workers.start("dispatcher", "app.workers.dispatcher")
    wait_until(lambda: _answers(port), 30, "the dispatcher's /metrics")
    student = zs.add_user("ann@example.com", "Ann")
    for number in range(3):
        post_message(client, student.email, "help", message_id=f"w-{number}")
    wait_until(lambda: len(zs.messages_to(student)) == 3, 30, "three replies in Zulip")

    def counted() -> bool:
        return value(samples(_scrape(port)), "lessonbot_zulip_sent_total", kind="chat_reply") == 3

    wait_until(counted, 10, "three sent replies counted")
    scraped = samples(_scrape(port))
    assert value(scraped, "lessonbot_reply_latency_seconds_count") == 3
    assert value(scraped, "lessonbot_zulip_failed_total", kind="chat_reply") == 0
    assert any(name == "process_cpu_seconds_total" for name, _ in scraped)  # the process's own health too
    with pytest.raises((URLError, ConnectionError)):
        _scrape(port, host="127.0.0.2")  # bound to 127.0.0.1 alone
