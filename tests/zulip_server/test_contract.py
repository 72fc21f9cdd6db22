"""The contract checker itself: it finds the reference file and catches violations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from werkzeug.datastructures import Headers, MultiDict

from .api import Exchange
from .contract import SPEC_PATH, ContractChecker
from .models import User
from .server import ZulipTestServer


def _exchange(method: str, path: str, status: int, body: dict[str, object], **query: str) -> Exchange:
    return Exchange(
        method,
        path,
        MultiDict(query),
        MultiDict(),
        Headers({"Authorization": "Basic eDp5"}),
        status,
        Headers(),
        json.dumps(body).encode(),
        None,
        None,
    )


def test_reference_file_is_the_vendored_copy_inside_the_repository() -> None:
    repository = Path(__file__).resolve().parents[2]
    assert SPEC_PATH.resolve().is_relative_to(repository)
    digest = hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest()
    assert digest == "2134f5f5ce4632067028e86ba0e520f4a710199ec8afe9d21b6ecb43d492321f"  # reference/README.md


def test_a_wrong_answer_is_reported(contract: ContractChecker) -> None:
    bad = _exchange("GET", "/api/v1/users/me", 200, {"result": "success", "msg": "", "user_id": "eight"})

    [violation] = contract.check(bad)

    assert violation.where == "response"
    assert "user_id" in violation.problem


def test_a_wrong_request_is_reported(contract: ContractChecker) -> None:
    bad = _exchange("GET", "/api/v1/messages", 200, {"result": "success", "msg": "", "messages": []}, anchor="newest")

    problems = [v.problem for v in contract.check(bad) if v.where == "request"]

    assert any("num_before" in problem for problem in problems)


def test_a_429_without_retry_after_is_reported(contract: ContractChecker) -> None:
    bad = _exchange("GET", "/api/v1/users/me", 429, {"result": "error", "msg": "slow down", "code": "RATE_LIMIT_HIT"})

    problems = {v.problem for v in contract.check(bad)}

    assert any("retry-after" in problem for problem in problems)
    assert "missing header Retry-After" in problems


def test_real_traffic_is_checked(zs: ZulipTestServer, contract: ContractChecker, alice: User, bot: User) -> None:
    before = contract.checked
    client = zs.client(alice)
    client.send_message({"type": "private", "to": [bot.email], "content": "hi"})
    client.get_messages({"anchor": "newest", "num_before": 5, "num_after": 0})

    assert contract.checked - before >= 3  # server_settings, send, fetch
