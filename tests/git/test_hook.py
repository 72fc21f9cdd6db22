"""POST /git/hook: a wrong or missing signature is 401 and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app.git.signing import repo_hook_key, sign
from app.runs.models import LessonRun
from tests.conftest import SECRETS
from tests.helpers import ChatStudent, replies_to


def _started(client: FlaskClient, tmp_path: Path) -> tuple[ChatStudent, LessonRun]:
    student = ChatStudent(client, "hook@example.com", tmp_path)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "# x\n", "Add README")
    # Push with the hook's target unreachable: the push succeeds, the step waits for a hook call.
    student.git("push", "-q", "origin", "main")
    run = student.run()
    assert run is not None and run.step_index == 0
    return student, run


def _post(client: FlaskClient, repo: str, key: str, *, stamp: str | None = None, body: bytes | None = None,
          signature: str | None = None) -> tuple[int, dict]:
    body = body if body is not None else json.dumps({"repo": repo, "refs": []}).encode()
    stamp = stamp or str(int(time.time()))
    headers = {"X-Lessonbot-Repo": repo, "X-Lessonbot-Timestamp": stamp,
               "X-Lessonbot-Signature": signature or sign(key, stamp, body)}
    response = client.post("/git/hook", data=body, content_type="application/json", headers=headers)
    return response.status_code, response.get_json()


def _key(repo: str) -> str:
    return repo_hook_key(SECRETS["git_hook_secret"], repo)


@pytest.mark.parametrize("tamper", ["wrong_key", "other_repo_key", "bad_signature", "old_timestamp", "body_changed"])
def test_bad_signature_is_401_and_changes_nothing(client: FlaskClient, tmp_path: Path, tamper: str) -> None:
    student, run = _started(client, tmp_path)
    repo = run.context["repo_name"]
    replies_before = replies_to(student.email)
    body = json.dumps({"repo": repo, "refs": []}).encode()
    stamp = str(int(time.time()))
    kwargs: dict = {
        "wrong_key": {"signature": sign("0" * 64, stamp, body)},
        "other_repo_key": {"signature": sign(_key("someone-else"), stamp, body)},
        "bad_signature": {"signature": "sha256=deadbeef"},
        "old_timestamp": {"stamp": str(int(time.time()) - 3600)},
        "body_changed": {"signature": sign(_key(repo), stamp, body), "stamp": stamp, "body": body + b" "},
    }[tamper]
    status, answer = _post(client, repo, _key(repo), **kwargs)
    assert (status, answer["error"]) == (401, "bad_signature")
    after = student.run()
    assert after is not None and (after.step_index, after.points, after.status) == (0, 0, run.status)
    assert replies_to(student.email) == replies_before


def test_missing_signature_headers_are_401(client: FlaskClient) -> None:
    response = client.post("/git/hook", json={"repo": "x", "refs": []})
    assert response.status_code == 401 and response.get_json()["error"] == "bad_signature"


def test_signed_event_checks_and_advances(client: FlaskClient, tmp_path: Path) -> None:
    student, run = _started(client, tmp_path)
    repo = run.context["repo_name"]
    status, answer = _post(client, repo, _key(repo))
    assert status == 200 and answer["status"] == "checked" and answer["passed"] == ["first-commit"]
    assert "Step 1 passed (+20)" in student.new_replies()
    assert student.run().step_index == 1  # type: ignore[union-attr]


def test_signed_event_for_unknown_repository_is_404(client: FlaskClient) -> None:
    assert _post(client, "no-such-repo", _key("no-such-repo"))[0] == 404


def test_signed_but_malformed_body_is_400(client: FlaskClient) -> None:
    status, answer = _post(client, "r1", _key("r1"), body=b'{"repo": 5}')
    assert status == 400 and answer["error"] == "invalid_body"


def test_event_for_a_stopped_run_is_ignored(client: FlaskClient, tmp_path: Path) -> None:
    student, run = _started(client, tmp_path)
    student.say("stop")
    seen = len(replies_to(student.email))
    status, answer = _post(client, run.context["repo_name"], _key(run.context["repo_name"]))
    assert (status, answer["status"]) == (200, "inactive")
    assert len(replies_to(student.email)) == seen


def test_git_auth_checks_the_per_repository_password(client: FlaskClient, tmp_path: Path) -> None:
    from base64 import b64encode

    from app.git.signing import repo_password

    _, run = _started(client, tmp_path)
    repo = run.context["repo_name"]
    uri = {"X-Original-URI": f"/git/{repo}.git/info/refs?service=git-upload-pack"}
    good = b64encode(f"student:{repo_password(SECRETS['git_hook_secret'], repo)}".encode()).decode()
    assert client.get("/git/auth", headers={**uri, "Authorization": f"Basic {good}"}).status_code == 200
    bad = client.get("/git/auth", headers={**uri, "Authorization": "Basic " + b64encode(b"student:nope").decode()})
    assert bad.status_code == 401 and "Basic" in bad.headers["WWW-Authenticate"]
    assert client.get("/git/auth", headers={"X-Original-URI": "/git/../../etc.git/"}).status_code == 403


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf", "infinity", "1e9", "+{now}", " {now}", "{now}.5",
                                   "\uff11\uff12\uff13", "0x10", "-{now}"])
def test_a_signed_but_malformed_timestamp_is_401_with_a_sentence(client: FlaskClient, tmp_path: Path, stamp: str) -> None:
    student, run = _started(client, tmp_path)
    repo = run.context["repo_name"]
    stamp = stamp.format(now=int(time.time()))
    body = json.dumps({"repo": repo, "refs": []}).encode()
    headers = {"X-Lessonbot-Repo": repo, "X-Lessonbot-Timestamp": stamp,
               "X-Lessonbot-Signature": sign(_key(repo), stamp, body)}
    response = client.post("/git/hook", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401 and response.get_json()["error"] == "bad_signature"
    assert response.get_json()["message"].endswith(".")
    assert student.run().step_index == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("signature", ["sha256=\u00e9" + "0" * 63, "\u00ff" * 71, "sha256=\u00a0"])
def test_a_non_ascii_signature_is_401_with_a_sentence(client: FlaskClient, signature: str) -> None:
    stamp = str(int(time.time()))
    headers = {"X-Lessonbot-Repo": "r1", "X-Lessonbot-Timestamp": stamp, "X-Lessonbot-Signature": signature}
    response = client.post("/git/hook", data=b'{"repo": "r1", "refs": []}', content_type="application/json",
                           headers=headers)
    assert response.status_code == 401
    assert response.get_json()["message"] == "The hook signature does not match the body."


def test_a_replayed_event_is_refused_and_queues_no_second_reply(client: FlaskClient, tmp_path: Path) -> None:
    student, run = _started(client, tmp_path)
    repo = run.context["repo_name"]
    stamp = str(int(time.time()))
    assert _post(client, repo, _key(repo), stamp=stamp)[0] == 200
    replies = replies_to(student.email)
    status, answer = _post(client, repo, _key(repo), stamp=stamp)
    assert status == 401 and "already received" in answer["message"]
    assert replies_to(student.email) == replies


def test_remembered_signatures_are_pruned_once_they_expire(client: FlaskClient) -> None:
    from datetime import timedelta

    import sqlalchemy as sa

    from app.db import db, utcnow
    from app.git.models import HookSignature
    from app.git.service import remember_signature

    db.session.add(HookSignature(signature="sha256=" + "1" * 64, expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    remember_signature("sha256=" + "2" * 64, int(time.time()))
    db.session.commit()
    assert db.session.scalars(sa.select(HookSignature.signature)).all() == ["sha256=" + "2" * 64]
