"""The lesson file format (see DESIGN.md, Lessons) and its validation.

Validation reports every mistake at once, each with the file, the step and the reason,
so that an author fixes a lesson in one round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from app.lessons.checks import CheckParams, check_types, platforms
from app.lessons.commands import parse as parse_command

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
MAX_ALIASES = 100               # a lesson needs few, if any
MAX_EXPANDED_NODES = 20_000     # the shipped lessons have a few hundred
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
    points: int = Field(strict=True, ge=0, le=1000)


class Lesson(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Slug
    platform: Slug
    title: Localized
    description: Localized | None = None
    max_points: int = Field(strict=True, gt=0, le=1000)
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
    where = _loc_text(item["loc"])
    return f"{where}: {message}" if where else message


def _loc_text(parts: Any) -> str:
    """A field path; a key that is not a plain name (a line break, a space) is shown quoted."""
    return ".".join(str(part) if re.fullmatch(r"[\w.-]+", str(part)) else repr(part) for part in parts)


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Name the step for a pydantic error location like ('steps', 2, 'check')."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps") or []
        step = steps[loc[1]] if loc[1] < len(steps) else {}
        label = _step_label(loc[1] + 1, step)
        return label, loc[2:]
    return "lesson", loc


def _pydantic_errors(file: str, raw: dict[str, Any], error: ValidationError) -> list[LessonError]:
    found = []
    for item in error.errors():
        where, rest = _where(tuple(item["loc"]), raw)
        field_name = _loc_text(rest)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "extra_forbidden":
            message = "is not a known field"
        found.append(LessonError(file, where, f"{field_name} {message}" if field_name else message))
    return found


def _step_label(number: int, step: Any) -> str:
    step_id = step.get("id") if isinstance(step, dict) else None
    # repr: an id is shown as written, a line break in it included, and the report stays one line per problem.
    return f"step {number}" + (f" {step_id!r}" if isinstance(step_id, str) and step_id else "")


def _valid_points(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000


def _step_errors(file: str, raw: dict[str, Any], steps: list[Any]) -> list[LessonError]:
    """Duplicate ids, checks of another platform, and answers a student could not type (they read as commands)."""
    found = []
    platform = raw.get("platform")
    seen: set[str] = set()
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            continue
        where = _step_label(number, step)
        step_id = step.get("id")
        if isinstance(step_id, str) and step_id in seen:
            found.append(LessonError(file, where, "id is used by an earlier step; step ids must be unique"))
        if isinstance(step_id, str):
            seen.add(step_id)
        check = step.get("check")
        if not isinstance(check, dict) or len(check) != 1:
            continue
        ((name, params),) = check.items()
        kind = check_types().get(name) if isinstance(name, str) else None
        if kind is None:
            continue
        if not kind.needs_answer and isinstance(platform, str) and kind.platform != platform:
            found.append(LessonError(file, where, f"check {name} belongs to platform {kind.platform!r}, not {platform!r}"))
        accepted = params.get("accept") if isinstance(params, dict) else None
        for answer in accepted if isinstance(accepted, list) else []:
            command = parse_command(answer) if isinstance(answer, str) else None
            if command is not None:
                reason = (f"accepted answer {answer!r} reads as the command {command.name!r}; "
                          "a command means the same on every step, so the student could never give it as an answer")
                found.append(LessonError(file, where, reason))
    return found


def _semantic_errors(file: str, raw: dict[str, Any]) -> list[LessonError]:
    """The rules across fields, checked on the raw data so that they are reported with the field errors, in one round.

    Each rule looks only at values of the right type: a field that is itself wrong is
    reported once, by the schema.
    """
    found = []
    platform = raw.get("platform")
    if isinstance(platform, str) and re.fullmatch(SLUG_PATTERN, platform) and platform not in platforms():
        known = ", ".join(sorted(platforms()))
        found.append(LessonError(file, "lesson", f"platform {platform!r} has no checks (known: {known})"))
    given = raw.get("steps")
    steps: list[Any] = given if isinstance(given, list) else []
    found += _step_errors(file, raw, steps)
    points: list[Any] = [step.get("points") if isinstance(step, dict) else None for step in steps]
    max_points = raw.get("max_points")
    if points and all(_valid_points(value) for value in points) and _valid_points(max_points):
        total = sum(int(value) for value in points)
        if total != max_points:
            found.append(LessonError(file, "lesson", f"max_points is {max_points} but the steps' points add up to {total}"))
    lesson_id = raw.get("id")
    if isinstance(lesson_id, str) and Path(file).stem != lesson_id:
        hint = f"; name the file {lesson_id}.yaml" if re.fullmatch(SLUG_PATTERN, lesson_id) else ""
        found.append(LessonError(file, "lesson", f"id {lesson_id!r} differs from the file name{hint}"))
    return found


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a cap on aliases: ``*name`` and ``<<: *name`` may copy a node many times over."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"uses more than {MAX_ALIASES} aliases (*name)", mark)
        return super().compose_node(parent, index)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes the document has once every alias and merge is copied out (linear: shared nodes counted once each)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ValueError("an alias refers to the node that contains it")
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, open_nodes) + _expanded_size(v, sizes, open_nodes) for k, v in node.value)
    open_nodes.discard(key)
    sizes[key] = min(size, MAX_EXPANDED_NODES + 1)
    return sizes[key]


def load_yaml(text: str) -> Any:
    """Parse YAML safely and within bounds, so that a hostile file costs little time and memory.

    Raises yaml.YAMLError for bad YAML and ValueError for a document too big once its
    aliases are expanded (a "billion laughs" bomb), nested too deep, or self-referring.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_EXPANDED_NODES:
            raise ValueError(f"expands to more than {MAX_EXPANDED_NODES} values through its aliases")
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    finally:
        loader.dispose()


def parse_lesson(file: str, text: str) -> tuple[Lesson | None, list[LessonError]]:
    """Parse and validate one lesson file's text: the lesson, or every mistake in it (all in one round)."""
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        said = " ".join(str(getattr(error, "problem", None) or error).split())  # one line, whatever PyYAML wrote
        return None, [LessonError(file, where, f"is not valid YAML: {said}")]
    except ValueError as error:
        return None, [LessonError(file, "file", f"is refused: it {error}")]
    if not isinstance(raw, dict):
        return None, [LessonError(file, "file", "must be a YAML mapping with id, platform, title, max_points and steps")]
    errors = _semantic_errors(file, raw)
    try:
        lesson = Lesson.model_validate(raw)
    except ValidationError as error:
        return None, _pydantic_errors(file, raw, error) + errors
    return (None if errors else lesson), errors
