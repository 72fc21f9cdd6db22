"""A check that crashes is an error the student can read, not a claim about their repository."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from app.i18n import Text
from app.lessons import checks
from app.lessons.checks import CheckContext, run_check


def test_a_crashing_check_says_the_fault_is_the_bots_and_logs_it(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    kind = checks.check_types()["git.branch_exists"]

    def crash(params: object, context: CheckContext) -> checks.CheckResult:
        raise KeyError("context without a repository")

    monkeypatch.setitem(checks._REGISTRY, "git.branch_exists", dataclasses.replace(kind, run=crash))
    with caplog.at_level(logging.ERROR):
        result = run_check("git.branch_exists", kind.params.model_validate({"name": "main"}), CheckContext())
    assert result.status == "error" and result.reason == Text("check.crashed")
    assert "the bot's side" in result.reason.render("en") and "repository" not in result.reason.render("en")
    assert "check git.branch_exists crashed" in caplog.text
