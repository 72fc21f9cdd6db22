"""The lesson file format (see DESIGN.md, Lessons) and its validation.

Validation reports every mistake at once, each with the file, the step and the reason,
so that an author fixes a lesson in one round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from app.lessons.checks import CheckParams, check_types, platforms

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Localized(BaseModel):
    """A text in both languages."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ru: NonEmpty
    en: NonEmpty

    def get(self, language: str) -> str:
        return self.ru if language == "ru" else self.en


class CheckSpec(BaseModel):
    """``{check_type: {params}}`` in the file; its type and validated parameters here."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: str
    params: CheckParams

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: Any) -> Any:
        if isinstance(data, CheckSpec):
            return data
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError("must be a mapping with exactly one check type, e.g. {git.commit_exists: {branch: main}}")
        ((name, raw),) = data.items()
        kinds = check_types()
        if name not in kinds:
            raise ValueError(f"unknown check type {name!r} (known: {', '.join(sorted(kinds))})")
        try:
            params = kinds[name].params.model_validate(raw or {})
        except ValidationError as error:
            raise ValueError(f"{name}: " + "; ".join(_one_error(item) for item in error.errors())) from None
        return {"type": name, "params": params}

    @property
    def needs_answer(self) -> bool:
        return check_types()[self.type].needs_answer


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Slug
    say: Localized
    hint: Localized | None = None
    check: CheckSpec
    points: int = Field(ge=0, le=1000)


class Lesson(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Slug
    platform: Slug
    title: Localized
    description: Localized | None = None
    max_points: int = Field(gt=0, le=1000)
    steps: list[Step] = Field(min_length=1)

    def step(self, index: int) -> Step:
        return self.steps[index]


@dataclass(frozen=True)
class LessonError:
    file: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


def _one_error(item: Any) -> str:
    message = str(item["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in item["loc"])
    return f"{where}: {message}" if where else message


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Name the step for a pydantic error location like ('steps', 2, 'check')."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps") or []
        step = steps[loc[1]] if loc[1] < len(steps) else {}
        step_id = step.get("id") if isinstance(step, dict) else None
        label = f"step {loc[1] + 1}" + (f" '{step_id}'" if step_id else "")
        return label, loc[2:]
    return "lesson", loc


def _pydantic_errors(file: str, raw: dict[str, Any], error: ValidationError) -> list[LessonError]:
    found = []
    for item in error.errors():
        where, rest = _where(tuple(item["loc"]), raw)
        field_name = ".".join(str(part) for part in rest)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "extra_forbidden":
            message = "is not a known field"
        found.append(LessonError(file, where, f"{field_name} {message}" if field_name else message))
    return found


def _semantic_errors(file: str, lesson: Lesson) -> list[LessonError]:
    found = []
    if lesson.platform not in platforms():
        known = ", ".join(sorted(platforms()))
        found.append(LessonError(file, "lesson", f"platform {lesson.platform!r} has no checks (known: {known})"))
    seen: set[str] = set()
    for number, step in enumerate(lesson.steps, start=1):
        where = f"step {number} '{step.id}'"
        if step.id in seen:
            found.append(LessonError(file, where, "id is used by an earlier step; step ids must be unique"))
        seen.add(step.id)
        kind = check_types()[step.check.type]
        if not kind.needs_answer and kind.platform != lesson.platform:
            reason = f"check {step.check.type} belongs to platform {kind.platform!r}, not {lesson.platform!r}"
            found.append(LessonError(file, where, reason))
    total = sum(step.points for step in lesson.steps)
    if total != lesson.max_points:
        reason = f"max_points is {lesson.max_points} but the steps' points add up to {total}"
        found.append(LessonError(file, "lesson", reason))
    return found


def parse_lesson(file: str, text: str) -> tuple[Lesson | None, list[LessonError]]:
    """Parse and validate one lesson file's text: the lesson, or every mistake in it."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        return None, [LessonError(file, where, f"is not valid YAML: {getattr(error, 'problem', error)}")]
    if not isinstance(raw, dict):
        return None, [LessonError(file, "file", "must be a YAML mapping with id, platform, title, max_points and steps")]
    try:
        lesson = Lesson.model_validate(raw)
    except ValidationError as error:
        return None, _pydantic_errors(file, raw, error)
    errors = _semantic_errors(file, lesson)
    stem = Path(file).stem
    if stem != lesson.id:
        errors.append(LessonError(file, "lesson", f"id {lesson.id!r} differs from the file name; name the file {lesson.id}.yaml"))
    return (None if errors else lesson), errors
