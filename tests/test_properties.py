"""Property tests: random Unicode, sizes and JSON types at every input the outside world reaches.

/internal/messages and /git/hook run through the Flask test client against the real
PostgreSQL; the dialog's parser and the lesson loader are called directly. Never a 500,
never an exception, at most one reply per message id. Example counts are bounded so the
file runs in well under a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.chat.dialog import COMMANDS, parse, strip_mention
from app.chat.markdown import quote_inline
from app.db import db
from app.git.signing import REPO_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, repo_hook_key, sign
from app.lessons.catalog import validate_path
from app.lessons.commands import normalize_text
from app.lessons.schema import LessonError, parse_lesson
from app.outbox.models import OutboxItem
from tests.conftest import SECRETS
from tests.helpers import INTERNAL_HEADERS

# database=None: no example database written into the checkout; a failure prints its example to reproduce it.
HTTP = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PURE = settings(max_examples=400, deadline=None, database=None)

scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**70) \
    | st.floats() | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
long_texts = st.builds(lambda char, count: char * count, st.characters(), st.integers(19_990, 20_010))
texts = st.text(max_size=60) | long_texts | st.sampled_from(["help", "start git-basics", "stop", "\x00", "@**all** help"])
emails = st.builds(lambda local, domain: f"{local}@{domain}", st.text(min_size=1, max_size=250),
                   st.text(min_size=1, max_size=20)) | st.emails() | st.just("İ" * 200 + "@example.org")
message_bodies = st.fixed_dictionaries({}, optional={
    "message_id": st.text(max_size=110) | st.integers() | json_values,
    "sender_email": emails | json_values,
    "sender_full_name": st.text(max_size=210) | json_values,
    "sender_id": st.integers(min_value=-(2**64), max_value=2**64) | st.booleans() | json_values,
    "content": texts | json_values,
}) | json_values


def _outbox_count() -> int:
    db.session.expire_all()
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)) or 0)


def _post_json(client: FlaskClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    data = json.dumps(body)  # NaN and Infinity come out as JavaScript, which is not JSON: a 400 too
    return client.post(path, data=data, content_type="application/json", headers=headers)


@HTTP
@given(body=message_bodies)
def test_internal_messages_never_fails_and_answers_each_id_at_most_once(app: Flask, client: FlaskClient, body: Any) -> None:
    before = _outbox_count()
    first = _post_json(client, "/internal/messages", body, INTERNAL_HEADERS)
    after_first = _outbox_count()
    assert first.status_code in (200, 400, 413), (first.status_code, first.get_data()[:300])
    answer = first.get_json()
    if first.status_code != 200:
        assert answer["error"] and answer["message"].endswith(".")
        assert after_first == before
        return
    assert after_first - before == answer.get("replies", 0) <= 1
    again = _post_json(client, "/internal/messages", body, INTERNAL_HEADERS)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert _outbox_count() == after_first


header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80)
signatures = header_text | st.just("sha256=" + "0" * 64)  # latin-1, as a header can carry: a non-ASCII signature is a 401 too


@HTTP
@given(repo=header_text | st.sampled_from(["git-basics-x-1", ""]), timestamp=header_text, signature=signatures,
       body=st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()))
def test_git_hook_with_random_headers_is_refused_never_fails(app: Flask, client: FlaskClient, repo: str, timestamp: str,
                                                            signature: str, body: bytes) -> None:
    headers = {REPO_HEADER: repo, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    response = client.post("/git/hook", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401, (response.status_code, response.get_data()[:300])


@HTTP
@given(repo=st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True),
       body=st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode())
       | st.fixed_dictionaries({"repo": st.text(max_size=20) | json_values, "refs": json_values})
       .map(lambda value: json.dumps(value).encode()),
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]))
def test_git_hook_with_a_valid_signature_and_random_bodies_never_fails(app: Flask, client: FlaskClient, repo: str,
                                                                      body: bytes, content_type: str) -> None:
    timestamp = str(int(time.time()))
    signature = sign(repo_hook_key(SECRETS["git_hook_secret"], repo), timestamp, body)
    headers = {REPO_HEADER: repo, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    response = client.post("/git/hook", data=body, content_type=content_type, headers=headers)
    assert response.status_code in (400, 401, 404, 415), (response.status_code, response.get_data()[:300])


@PURE
@given(text=st.text() | st.builds(lambda noise, word, tail: noise + word + tail, st.text(st.characters(categories=["Cf", "Zs"]),
                                                                                     max_size=3),
                                  st.sampled_from(sorted(COMMANDS)), st.text("!?.,… \u200b\ufeff", max_size=3)))
def test_the_parser_reads_any_text_the_same_way_as_its_normal_form(text: str) -> None:
    command = parse(text)
    assert command is None or command.name in COMMANDS.values()
    assert parse(normalize_text(text)) == command
    assert strip_mention(text).strip() == strip_mention(text)
    quoted = quote_inline(text)
    assert "\n" not in quoted and len(quoted) <= 60 + 2 * (quoted.count("`") + 2)


@PURE
@given(prefix=st.text(st.characters(categories=["Cf"]), max_size=3), word=st.sampled_from(sorted(COMMANDS)),
       suffix=st.sampled_from(["", "!", "?", ".", "\u200b", "\u2069"]))
def test_every_command_word_survives_invisible_characters_case_and_punctuation(prefix: str, word: str, suffix: str) -> None:
    command = parse(prefix + word.upper() + suffix)
    assert command is not None and command.name == COMMANDS[word]


lesson_like = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=20) | json_values, "platform": st.sampled_from(["git", "zulip", "nope"]) | json_values,
    "title": json_values, "max_points": json_values,
    "steps": st.lists(st.fixed_dictionaries({}, optional={
        "id": st.text(max_size=10) | json_values, "say": json_values, "points": json_values,
        "check": st.dictionaries(st.sampled_from(["answer", "git.branch_exists", "git.file_exists", "zulip.reacted", "x"]),
                                 json_values, max_size=2),
    }), max_size=4) | json_values,
})


def _one_line_errors(errors: list[LessonError]) -> None:
    for error in errors:
        assert "\n" not in str(error) and error.reason


@PURE
@given(data=lesson_like)
def test_lesson_loader_reports_any_structure_as_errors(data: Any) -> None:
    lesson, errors = parse_lesson("prop.yaml", yaml.safe_dump(data, allow_unicode=True))
    assert (lesson is None) == bool(errors)
    _one_line_errors(errors)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode)
       | st.text(max_size=200).map(lambda text: text.encode("utf-16")))
def test_lesson_loader_reports_any_bytes_as_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "prop.yaml"
    path.write_bytes(content)
    lessons, errors = validate_path(path)
    assert lessons == [] and errors
    _one_line_errors(errors)
