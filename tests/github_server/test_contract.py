"""The contract checker itself: it finds what breaks GitHub's description, and knows the vendored file."""

from __future__ import annotations

import hashlib
import json

from werkzeug.datastructures import Headers

from .api import Exchange
from .contract import SPEC_PATH, ContractChecker
from .reference.vendor import OPERATIONS, VERSION

REF = {"ref": "refs/heads/main", "node_id": "x", "url": "https://api.github.com/r",
       "object": {"type": "commit", "sha": "a" * 40, "url": "https://api.github.com/c"}}


def exchange(path: str, status: int, body: object, method: str = "GET") -> Exchange:
    return Exchange(method, path, {}, Headers(), b"", status, Headers({"ETag": 'W/"1"'}),
                    json.dumps(body).encode() if body is not None else b"", None, None)


def test_a_correct_answer_passes(github_contract: ContractChecker) -> None:
    assert github_contract.check(exchange("/repos/o/r/git/ref/heads/main", 200, REF)) == []


def test_a_missing_required_field_is_a_violation(github_contract: ContractChecker) -> None:
    broken = {key: value for key, value in REF.items() if key != "object"}
    problems = github_contract.check(exchange("/repos/o/r/git/ref/heads/main", 200, broken))
    assert [p.where for p in problems] == ["response"]


def test_an_endpoint_github_does_not_have_is_a_violation(github_contract: ContractChecker) -> None:
    problems = github_contract.check(exchange("/repos/o/r/made-up", 200, {}))
    assert [p.problem for p in problems] == ["no such operation in GitHub's description"]


def test_an_error_must_have_githubs_error_shape(github_contract: ContractChecker) -> None:
    assert github_contract.check(exchange("/repos/o/r", 401, {"message": "Bad credentials"})) == []
    assert github_contract.check(exchange("/repos/o/r", 401, {"error": "no"}))


def test_the_vendored_description_holds_every_operation_it_lists() -> None:
    spec = json.loads(SPEC_PATH.read_text())
    assert VERSION in spec["info"]["x-lessonbot-subset"]
    for method, path in OPERATIONS:
        assert method in spec["paths"][path], (method, path)
    readme = (SPEC_PATH.parent / "README.md").read_text()
    assert hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest() in readme
