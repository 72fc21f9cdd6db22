"""Many distinct students at once, while the bot long-polls (bounded and self-stopping)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import zulip

from .listener import MessageListener
from .models import User
from .server import ZulipTestServer

STUDENTS = 200


def test_every_student_message_reaches_the_long_polling_bot(zs: ZulipTestServer, bot: User) -> None:
    students = [zs.add_user(f"s{n}@example.com", f"Student {n}") for n in range(STUDENTS)]

    def send(student: User) -> str:
        client = zulip.Client(email=student.email, api_key=student.api_key, site=zs.url)
        result = client.send_message({"type": "private", "to": [bot.email], "content": "start git-basics"})
        return str(result["result"])

    with MessageListener(zs, bot) as listener, ThreadPoolExecutor(max_workers=32) as pool:
        started = time.monotonic()
        results = list(pool.map(send, students))
        received = listener.wait_for_count(STUDENTS)
        elapsed = time.monotonic() - started

    assert results == ["success"] * STUDENTS
    assert sorted(m["sender_id"] for m in received) == sorted(s.id for s in students)
    assert elapsed < 10, f"{STUDENTS} students took {elapsed:.1f} s"
