"""Courses under short aliases, their Classroom rosters, and the lessons' assignments (courseWork)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.courses.models import Assignment, Course, CourseStudent
from app.db import db, utcnow
from app.google.client import call, service
from app.lessons.schema import Lesson
from app.settings import Settings

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


def add_course(settings: Settings, alias: str, name: str) -> Course:
    """Find the Classroom course by its exact name (ignoring case) and remember it under the alias."""
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
