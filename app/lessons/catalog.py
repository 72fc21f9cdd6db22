"""The set of lessons the app serves, loaded from a directory of YAML files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.lessons.schema import Lesson, LessonError, parse_lesson


class InvalidLessons(Exception):
    """Raised at start when a lesson file is invalid: the app refuses to serve it."""

    def __init__(self, errors: list[LessonError]) -> None:
        self.errors = errors
        summary = "; ".join(str(error) for error in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"Invalid lesson files: {summary}{more}. Run ./manage.py lessons validate for details.")


@dataclass
class Catalog:
    lessons: dict[str, Lesson] = field(default_factory=dict)

    def get(self, lesson_id: str) -> Lesson | None:
        return self.lessons.get(lesson_id.strip().lower())

    def __iter__(self) -> Iterator[Lesson]:
        return iter(sorted(self.lessons.values(), key=lambda lesson: lesson.id))

    def __len__(self) -> int:
        return len(self.lessons)


def lesson_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])


def validate_path(path: Path) -> tuple[list[Lesson], list[LessonError]]:
    """Every lesson in a file or directory, and every mistake found."""
    if not path.exists():
        return [], [LessonError(str(path), "path", "does not exist")]
    lessons: list[Lesson] = []
    errors: list[LessonError] = []
    ids: dict[str, Path] = {}
    for file in lesson_files(path):
        lesson, found = parse_lesson(str(file), file.read_text(encoding="utf-8"))
        errors.extend(found)
        if lesson is None:
            continue
        if lesson.id in ids:
            errors.append(LessonError(str(file), "lesson", f"id {lesson.id!r} is already used by {ids[lesson.id]}"))
            continue
        ids[lesson.id] = file
        lessons.append(lesson)
    return lessons, errors


def load_catalog(directory: Path) -> Catalog:
    """Load every lesson, or raise InvalidLessons naming every mistake."""
    lessons, errors = validate_path(directory)
    if errors:
        raise InvalidLessons(errors)
    return Catalog({lesson.id: lesson for lesson in lessons})
