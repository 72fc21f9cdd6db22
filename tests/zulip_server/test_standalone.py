"""`python -m tests.zulip_server` serves a bot a developer can point a receiver at."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import zulip

from tests import lifetime

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_standalone_server_prints_working_credentials(tmp_path: Path) -> None:
    port = _free_port()
    zuliprc = tmp_path / "zuliprc"
    process = lifetime.popen(
        [sys.executable, "-m", "tests.zulip_server", "--port", str(port), "--zuliprc", str(zuliprc), "--stream", "lessons"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(10)]
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text, text
        student_email, student_key = re.findall(r"email=(student1\S+) api_key=(\w+)", text)[0]

        bot = zulip.Client(config_file=str(zuliprc))
        student = zulip.Client(email=student_email, api_key=student_key, site=f"http://127.0.0.1:{port}")
        sent = student.send_message({"type": "private", "to": [bot.email], "content": "hi"})
        fetched = bot.get_messages({"anchor": "newest", "num_before": 1, "num_after": 0})

        assert sent["result"] == "success"
        assert fetched["messages"][0]["sender_email"] == student_email
        assert [s["name"] for s in bot.get_subscriptions()["subscriptions"]] == ["lessons"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0
