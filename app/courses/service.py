"""Courses under short aliases, their Classroom rosters, and the lessons' assignments (courseWork)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.courses.models import Assignment, Course, CourseStudent
from app.db import db, utcnow
from app.google.client import call, credentials, service
from app.grading.service import GRADE_KINDS
from app.lessons.schema import Lesson
from app.outbox.models import OutboxItem, OutboxStatus
from app.runs.models import LessonRun
from app.settings import Settings
from app.students.service import in_course

ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PLATFORM_NAMES = {"git": "Git", "github": "GitHub", "gitlab": "GitLab", "zulip": "Zulip"}
TITLE_PREFIX = "Интерактивный урок по"


class CourseError(Exception):
    """A course or assignment command cannot be done; the message says why and what to do."""


def platform_name(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform.capitalize())


def default_title(lesson: Lesson) -> str:
    return f"{TITLE_PREFIX} {platform_name(lesson.platform)}"


def title_matches(title: str, lesson: Lesson) -> bool:
    """The Classroom rule (README, Grades): exactly the platform name, or «Интерактивный урок по <platform>»
    with single ordinary spaces, ignoring only letter case and Unicode composition (NFC). Spaces are not
    trimmed or collapsed: a title a teacher typed differently is not silently taken as the assignment."""
    wanted = {_title_key(lesson.platform), _title_key(f"{TITLE_PREFIX} {lesson.platform}")}
    return _title_key(title) in wanted


def _title_key(title: str) -> str:
    return unicodedata.normalize("NFC", title).casefold()


def _pages(request_for: Any, key: str, what: str) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        page = call(request_for(token), what)
        yield from page.get(key, [])
        token = page.get("nextPageToken")
        if not token:
            return


def get_course(alias: str) -> Course:
    course = db.session.scalars(sa.select(Course).where(Course.alias == alias)).first()
    if course is None:
        raise CourseError(f"no course with alias {alias!r}; see ./manage.py courses list, or add it with courses add")
    return course


def check_alias(alias: str) -> str:
    """An alias is typed in commands (`--course git1`): a short word, nothing a shell would split or expand."""
    if not ALIAS.fullmatch(alias):
        raise CourseError(f"{alias!r} cannot be a course alias: use up to 64 letters, digits, '.', '_' or '-', "
                          f"starting with a letter or digit (e.g. git-2024)")
    return alias


def courses_for(settings: Settings, alias: str | None) -> list[Course]:
    """The course ALIAS, or every course, for a command that asks Classroom about them.

    Google's state is checked first, so that an install without Google says so instead
    of finding no courses and printing nothing.
    """
    credentials(settings)
    if alias:
        return [get_course(alias)]
    courses = list(db.session.scalars(sa.select(Course).order_by(Course.alias)))
    if not courses:
        raise CourseError('no courses yet: add one with ./manage.py courses add ALIAS "Classroom course name"')
    return courses


def add_course(settings: Settings, alias: str, name: str) -> Course:
    """Find the Classroom course by its exact name (ignoring case) and remember it under the alias."""
    check_alias(alias)
    classroom = service(settings, "classroom")
    found = [c for c in _pages(lambda t: classroom.courses().list(pageToken=t, pageSize=100, courseStates=["ACTIVE"]),
                               "courses", "listing courses")
             if " ".join(str(c.get("name", "")).split()).casefold() == " ".join(name.split()).casefold()]
    if not found:
        raise CourseError(f"no active Classroom course is named {name!r} for the authorized account")
    if len(found) > 1:
        ids = ", ".join(f"{c['id']} ({c.get('section') or 'no section'})" for c in found)
        raise CourseError(f"{len(found)} Classroom courses are named {name!r}: {ids}; rename one in Classroom")
    course = db.session.scalars(sa.select(Course).where(Course.alias == alias)).first() or Course(alias=alias)
    course.classroom_name = str(found[0]["name"])
    course.classroom_id = str(found[0]["id"])
    db.session.add(course)
    db.session.flush()
    return course


def rename_course(old: str, new: str) -> Course:
    """Give a course another alias; its roster, assignments and grades stay with it (the caller commits)."""
    course = get_course(old)
    check_alias(new)
    if new == old:
        raise CourseError(f"course {old} is already called {new}")
    taken = db.session.scalars(sa.select(Course).where(Course.alias == new)).first()
    if taken is not None:
        raise CourseError(f"the alias {new!r} is taken by “{taken.classroom_name}”; pick another, or remove that one first")
    course.alias = new
    db.session.flush()
    return course


@dataclass(frozen=True)
class CourseUse:
    """What still refers to a course's students: their runs and the grades not yet in Classroom."""

    students: int
    runs: int
    grades_waiting: int


def course_use(course: Course) -> CourseUse:
    on_roster = db.session.scalar(sa.select(sa.func.count()).where(CourseStudent.course_id == course.id)) or 0
    runs = db.session.scalar(sa.select(sa.func.count(LessonRun.id)).where(LessonRun.student_id.in_(in_course(course))))
    waiting = db.session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(
        OutboxItem.kind.in_(GRADE_KINDS), OutboxItem.status != OutboxStatus.SENT,
        OutboxItem.student_id.in_(in_course(course))))
    return CourseUse(int(on_roster), int(runs or 0), int(waiting or 0))


def remove_course(alias: str, force: bool = False) -> CourseUse:
    """Forget a course: its roster and the record of its assignments go; students, runs and grades stay.

    A course whose students have runs or undelivered grades is removed only with ``force``:
    their grades then go only to the students' other courses (or wait for one).
    """
    course = get_course(alias)
    use = course_use(course)
    if not force and (use.runs or use.grades_waiting):
        raise CourseError(f"course {alias} has {use.runs} runs of its students and {use.grades_waiting} grades not yet "
                          f"in Classroom; they are kept, but no grade goes to {alias} any more: add --force to remove it")
    db.session.execute(sa.delete(Course).where(Course.id == course.id))  # the roster and assignments cascade
    return use


def list_courses() -> list[tuple[Course, int]]:
    counts = (sa.select(CourseStudent.course_id, sa.func.count().label("n")).group_by(CourseStudent.course_id).subquery())
    query = (sa.select(Course, sa.func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.course_id == Course.id)
             .order_by(Course.alias))
    return [(course, int(n)) for course, n in db.session.execute(query)]


def sync_roster(settings: Settings, course: Course) -> int:
    """Replace the course's roster with Classroom's; returns the number of students."""
    classroom = service(settings, "classroom")
    students = list(_pages(lambda t: classroom.courses().students().list(courseId=course.classroom_id, pageToken=t,
                                                                         pageSize=100),
                           "students", f"listing the students of {course.alias}"))
    db.session.execute(sa.delete(CourseStudent).where(CourseStudent.course_id == course.id))
    now = utcnow()
    for student in students:
        profile = student.get("profile", {})
        email = profile.get("emailAddress")
        db.session.add(CourseStudent(course_id=course.id, classroom_user_id=str(student["userId"]),
                                     email=email.lower() if email else None,
                                     full_name=str(profile.get("name", {}).get("fullName", "")), synced_at=now))
    db.session.flush()
    from app.grading.service import wake_grades

    wake_grades()
    return len(students)


def _description(lesson: Lesson) -> str:
    return (f"{lesson.title.ru}\n\nНапишите боту Lessonbot в Zulip: `начать {lesson.id}` "
            f"(или `start {lesson.id}`). Оценка появится здесь, когда вы пройдёте урок.\n"
            f"Перед этим свяжите аккаунт Google: напишите боту `link`.")


def create_assignment(settings: Settings, course: Course, lesson: Lesson, title: str | None = None) -> Assignment:
    """Create the lesson's courseWork in the course (by this project, so it can grade it) and record it."""
    body = {"title": title or default_title(lesson), "description": _description(lesson), "workType": "ASSIGNMENT",
            "state": "PUBLISHED", "maxPoints": lesson.max_points}
    classroom = service(settings, "classroom")
    work = call(classroom.courses().courseWork().create(courseId=course.classroom_id, body=body),
                f"creating the assignment in {course.alias}")
    assignment = db.session.scalars(sa.select(Assignment).where(
        Assignment.course_id == course.id, Assignment.lesson_id == lesson.id)).first()
    if assignment is None:
        assignment = Assignment(course_id=course.id, lesson_id=lesson.id)
        db.session.add(assignment)
    assignment.coursework_id = str(work["id"])
    assignment.title = str(work["title"])
    assignment.max_points = lesson.max_points
    db.session.flush()
    return assignment


@dataclass(frozen=True)
class FoundWork:
    course: Course
    lesson: Lesson | None
    coursework_id: str
    title: str
    associated: bool
    state: str


def classroom_assignments(settings: Settings, course: Course, lessons: list[Lesson]) -> list[FoundWork]:
    """The course's courseWork that match a lesson by title (and every one the app recorded)."""
    classroom = service(settings, "classroom")
    works = _pages(lambda t: classroom.courses().courseWork().list(courseId=course.classroom_id, pageToken=t,
                                                                   courseWorkStates=["PUBLISHED", "DRAFT"]),
                   "courseWork", f"listing the assignments of {course.alias}")
    recorded = {a.coursework_id for a in db.session.scalars(sa.select(Assignment).where(Assignment.course_id == course.id))}
    found = []
    for work in works:
        lesson = next((le for le in lessons if title_matches(str(work.get("title", "")), le)), None)
        if lesson is None and str(work["id"]) not in recorded:
            continue
        found.append(FoundWork(course, lesson, str(work["id"]), str(work.get("title", "")),
                               bool(work.get("associatedWithDeveloper")), str(work.get("state", ""))))
    return found


def assignment_for(course_id: int, lesson_id: str) -> Assignment | None:
    return db.session.scalars(sa.select(Assignment).where(
        Assignment.course_id == course_id, Assignment.lesson_id == lesson_id)).first()


def not_ours_reason(course: Course, lesson_id: str, title: str) -> str:
    return (f"the assignment “{title}” in course {course.alias} was not created by Lessonbot, and Classroom lets only "
            f"the Google project that created an assignment grade it; fix: ./manage.py assignments create "
            f"--course {course.alias} --lesson {lesson_id}, then ./manage.py grades sync")


def adopt_by_title(settings: Settings, course: Course, lesson: Lesson) -> Assignment | None:
    """Find the lesson's courseWork by the title rule; record it if the app created it.

    Raises CourseError with the reason and the fix when the matching work belongs to another project.
    """
    matches = [w for w in classroom_assignments(settings, course, [lesson]) if w.lesson is not None]
    ours = [w for w in matches if w.associated]
    if ours:
        assignment = Assignment(course_id=course.id, lesson_id=lesson.id, coursework_id=ours[0].coursework_id,
                                title=ours[0].title, max_points=lesson.max_points)
        db.session.add(assignment)
        db.session.flush()
        return assignment
    if matches:
        raise CourseError(not_ours_reason(course, lesson.id, matches[0].title))
    return None
