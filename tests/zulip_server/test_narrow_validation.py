"""Narrows are validated as Zulip's own code does (zerver/lib/narrow.py, NarrowParameter.validate_terms).

`dm` and `pm-with` take a string of emails or a list of integer user ids; `id`, `stream`,
`sender`, `dm-including` a string or an integer; `search` a non-blank string; every other
operator a string. Unknown operators are BAD_NARROW; servers before feature level 177 do
not know `dm`, `dm-including` or `is:dm`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.zulip_server.server import ZulipTestServer


def _fetch(zs: ZulipTestServer, narrow: list[Any]) -> dict[str, Any]:
    bot = zs.user("bot@example.com")
    return dict(zs.client(bot).get_messages({"anchor": "newest", "num_before": 10, "num_after": 0,
                                             "narrow": json.dumps(narrow)}))


@pytest.fixture
def server() -> Any:
    with ZulipTestServer() as zs:
        zs.add_user("bot@example.com", "Bot", bot=True)
        zs.add_user("ann@example.com", "Ann")
        yield zs


def _ann(zs: ZulipTestServer) -> int:
    return zs.user("ann@example.com").id


@pytest.mark.parametrize(("term", "error"), [
    ({"operator": "dm", "operand": ["ann@example.com"]}, "operand[0] is not an integer"),
    ({"operator": "pm-with", "operand": ["ann@example.com"]}, "operand[0] is not an integer"),
    ({"operator": "dm", "operand": 9}, "operand is not a string or an integer list"),
    ({"operator": "sender", "operand": ["ann@example.com"]}, "operand is not a string or integer"),
    ({"operator": "is", "operand": 1}, "operand is not a string"),
    ({"operator": "topic", "operand": ["a"]}, "operand is not a string"),
    ({"operator": "search", "operand": "  "}, "operand cannot be blank."),
    ({"operator": "stream", "operand": "general", "negated": "yes"}, "negated is not a boolean"),
    ({"operator": "sender"}, "operand is missing"),
    ({"operand": "x"}, "operator is missing"),
    ("sender:ann@example.com", "dict or list required"),
])
def test_badly_typed_terms_are_refused_like_zulip_does(server: ZulipTestServer, term: Any, error: str) -> None:
    result = _fetch(server, [term])
    assert result["result"] == "error" and result["code"] == "BAD_REQUEST" and result["msg"] == error


def test_unknown_operators_are_bad_narrow(server: ZulipTestServer) -> None:
    result = _fetch(server, [{"operator": "from", "operand": "ann@example.com"}])
    assert result["code"] == "BAD_NARROW" and "unknown operator from" in result["msg"]


@pytest.mark.parametrize("term", [
    {"operator": "dm", "operand": "ann@example.com"},
    {"operator": "dm", "operand": [0]},  # replaced by Ann's id below
    {"operator": "sender", "operand": 0},
    {"operator": "pm-with", "operand": "ann@example.com"},
    {"operator": "is", "operand": "dm"},
    ["is", "private"],
])
def test_well_typed_terms_are_accepted(server: ZulipTestServer, term: Any) -> None:
    if isinstance(term, dict) and term["operand"] in ([0], 0):
        term = {**term, "operand": [_ann(server)] if isinstance(term["operand"], list) else _ann(server)}
    assert _fetch(server, [term])["result"] == "success"


@pytest.mark.parametrize(("term", "accepted"), [
    ({"operator": "dm", "operand": "ann@example.com"}, False),
    ({"operator": "dm-including", "operand": "ann@example.com"}, False),
    ({"operator": "is", "operand": "dm"}, False),
    ({"operator": "pm-with", "operand": "ann@example.com"}, True),
    ({"operator": "is", "operand": "private"}, True),
])
def test_a_server_before_feature_level_177_knows_only_the_old_words(term: Any, accepted: bool) -> None:
    with ZulipTestServer(zulip_version="6.2", feature_level=165) as old:
        old.add_user("bot@example.com", "Bot", bot=True)
        old.add_user("ann@example.com", "Ann")
        result = _fetch(old, [term])
    if accepted:
        assert result["result"] == "success"
    else:
        assert result["code"] == "BAD_NARROW" and "unknown" in result["msg"]
