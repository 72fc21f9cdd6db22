"""The set of lessons the app serves, loaded from a directory of YAML files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.lessons.commands import normalize_word
from app.lessons.schema import Lesson, LessonError, parse_lesson

MAX_FILE_BYTES = 256 * 1024


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
        """The lesson as the student names it: any case, invisible characters or final punctuation (``Git-Basics.``)."""
        return self.lessons.get(normalize_word(lesson_id))

    def __iter__(self) -> Iterator[Lesson]:
        return iter(sorted(self.lessons.values(), key=lambda lesson: lesson.id))

    def __len__(self) -> int:
        return len(self.lessons)


def lesson_files(path: Path) -> list[Path]:
    """The lesson files of a directory (``*.yaml``, ``*.yml``), or the one file given."""
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    return [path]


def read_lesson_file(file: Path) -> tuple[str | None, list[LessonError]]:
    """The file's text, or why it cannot be a lesson file (not a regular file, too big, not UTF-8)."""
    name = str(file)
    if file.is_dir():
        return None, [LessonError(name, "file", "is a directory, not a lesson file; rename it or move it away")]
    if not file.is_file():
        return None, [LessonError(name, "file", "is not a regular file (a device, a pipe or a broken link)")]
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, [LessonError(name, "file", f"cannot be read ({error.strerror})")]
    if len(data) > MAX_FILE_BYTES:
        return None, [LessonError(name, "file", f"is larger than {MAX_FILE_BYTES // 1024} KiB; a lesson is much smaller")]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [LessonError(name, "file", "is UTF-16 text; save it as UTF-8")]
    if b"\x00" in data:
        return None, [LessonError(name, "file", "contains NUL bytes (binary, or UTF-16 without a mark); save it as UTF-8")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return None, [LessonError(name, f"line {line}", f"is not UTF-8 text (byte {error.start}); save the file as UTF-8")]


def validate_path(path: Path, *, require_lessons: bool = False) -> tuple[list[Lesson], list[LessonError]]:
    """Every lesson in a file or directory, and every mistake found.

    ``require_lessons``: finding no lesson file at all is a mistake too (``lessons
    validate`` on an empty folder or ``/dev/null`` must not say OK).
    """
    if not path.exists():
        return [], [LessonError(str(path), "path", "does not exist")]
    if not path.is_dir() and not path.is_file():
        return [], [LessonError(str(path), "path", "is neither a lesson file nor a directory of them")]
    lessons: list[Lesson] = []
    errors: list[LessonError] = []
    ids: dict[str, Path] = {}
    files = lesson_files(path)
    if require_lessons and not files:
        return [], [LessonError(str(path), "path", "has no lesson files (*.yaml)")]
    for file in files:
        text, found = read_lesson_file(file)
        if text is not None:
            lesson, found = parse_lesson(str(file), text)
        errors.extend(found)
        if text is None or lesson is None:
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
