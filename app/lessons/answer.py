"""The ``answer`` check: the student's typed answer matches one of the accepted ones."""

from __future__ import annotations

import re
import unicodedata

from pydantic import Field, field_validator

from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_type, not_yet
from app.lessons.commands import strip_format_characters


class AnswerParams(CheckParams):
    accept: list[str] = Field(min_length=1, description="Accepted answers; case and spacing are ignored.")

    @field_validator("accept")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        if any(not normalize(value) for value in values):
            raise ValueError("accepted answers must not be empty")
        return values


def normalize(text: str) -> str:
    """Lower case (NFKC), single spaces, no invisible format characters, surrounding backticks, quotes or final punctuation.

    An answer made only of such characters (the answer "`") is kept as typed.
    """
    bare = unicodedata.normalize("NFKC", strip_format_characters(text)).strip()
    unquoted = bare.strip("`'\"«»“”").strip() or bare
    return re.sub(r"\s+", " ", unquoted).casefold().rstrip(".!?;") or unquoted


@check_type("answer", AnswerParams, needs_answer=True)
def answer(params: AnswerParams, context: CheckContext) -> CheckResult:
    given = normalize(context.answer or "")
    if given in {normalize(value) for value in params.accept}:
        return PASSED
    return not_yet("answer.wrong")
