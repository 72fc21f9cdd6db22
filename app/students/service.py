"""Finding and creating students, and what admins see of them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa

from app.courses.models import Course, CourseStudent
from app.db import db, upsert_insert
from app.google.models import GoogleLink
from app.students.models import Student

STUDENTS = Student.__table__


@dataclass(frozen=True)
class StudentRef:
    """The columns of a student that message handling needs, without ORM tracking."""

    id: int
    email: str
    language: str
    zulip_user_id: int | None


@lru_cache(maxsize=2)
def _upsert_statement(dialect: str) -> sa.Insert:
    """Built once per dialect: constructing and cache-keying it per message costs more than running it."""
    insert = upsert_insert(STUDENTS, dialect)
    statement = insert.values(email=sa.bindparam("email"), full_name=sa.bindparam("full_name"),
                              zulip_user_id=sa.bindparam("zulip_user_id"), language=sa.bindparam("language"),
                              created_at=sa.func.now())
    return statement.on_conflict_do_update(
        index_elements=["email"],
        set_={
            "full_name": sa.case((insert.excluded.full_name != "", insert.excluded.full_name), else_=STUDENTS.c.full_name),
            # Nobody else has this user id (get_or_create_student looked first); the sender owns the email now.
            "zulip_user_id": sa.func.coalesce(insert.excluded.zulip_user_id, STUDENTS.c.zulip_user_id),
        },
    ).returning(STUDENTS.c.id, STUDENTS.c.email, STUDENTS.c.language, STUDENTS.c.zulip_user_id)


@lru_cache(maxsize=1)
def _by_zulip_id_statement() -> sa.Update:
    """Refresh the student with this Zulip user id: the email follows Zulip's, unless another student holds it."""
    other = STUDENTS.alias("other")
    new_email, new_name = sa.bindparam("new_email", type_=sa.String), sa.bindparam("new_name", type_=sa.String)
    email_taken = sa.exists().where(other.c.email == new_email, other.c.id != STUDENTS.c.id)
    return (sa.update(STUDENTS)
            .where(STUDENTS.c.zulip_user_id == sa.bindparam("user_id"))
            .values(email=sa.case((email_taken, STUDENTS.c.email), else_=new_email),
                    full_name=sa.case((new_name != "", new_name), else_=STUDENTS.c.full_name))
            .returning(STUDENTS.c.id, STUDENTS.c.email, STUDENTS.c.language, STUDENTS.c.zulip_user_id))


def get_or_create_student(email: str, full_name: str, zulip_user_id: int | None, language: str) -> StudentRef:
    """The student who sent a message, created on first contact and locked for this transaction.

    A Zulip user is known by their user id, which never changes: when their email
    changes in Zulip, the same student's email is updated (an UPDATE by id, which also
    takes the row lock). Without an id (the console) or on first contact, one upsert by
    email creates the row or refreshes the name, and holds the row lock as well, so one
    student's messages are handled one at a time.
    """
    params = {"email": email.strip().lower(), "full_name": full_name, "zulip_user_id": zulip_user_id, "language": language}
    if zulip_user_id is not None:
        by_id = {"new_email": params["email"], "new_name": full_name, "user_id": zulip_user_id}
        row = db.session.execute(_by_zulip_id_statement(), by_id).one_or_none()
        if row is not None:
            return StudentRef(row.id, row.email, row.language, row.zulip_user_id)
    row = db.session.execute(_upsert_statement(db.engine.dialect.name), params).one()
    return StudentRef(row.id, row.email, row.language, row.zulip_user_id)


def set_language(student_id: int, language: str) -> None:
    db.session.execute(sa.update(STUDENTS).where(STUDENTS.c.id == student_id).values(language=language))


class StudentNotFound(LookupError):
    """No student has this email; the message says where to look."""


def in_course(course: Course) -> sa.Select[int]:
    """The ids of the course's students, found as grading finds them: by chat email, or by the linked Google account."""
    roster = sa.select(CourseStudent.email).where(CourseStudent.course_id == course.id)
    user_ids = sa.select(CourseStudent.classroom_user_id).where(CourseStudent.course_id == course.id)
    linked = sa.select(GoogleLink.student_id).where(
        sa.or_(GoogleLink.google_email.in_(roster), GoogleLink.google_user_id.in_(user_ids)))
    return sa.select(Student.id).where(sa.or_(Student.email.in_(roster), Student.id.in_(linked)))


def search_students(course: Course | None = None, search: str | None = None, limit: int = 200) -> list[Student]:
    """Students by email, optionally on one course and whose email or name contains ``search`` (any case)."""
    query = sa.select(Student).order_by(Student.email).limit(limit)
    if course is not None:
        query = query.where(Student.id.in_(in_course(course)))
    if search:
        query = query.where(sa.or_(Student.email.icontains(search, autoescape=True),
                                   Student.full_name.icontains(search, autoescape=True)))
    return list(db.session.scalars(query))


def find_student(email: str) -> Student:
    student = db.session.scalars(sa.select(Student).where(Student.email == email.strip().lower())).first()
    if student is None:
        raise StudentNotFound(f"no student with email {email.strip()!r}; see ./manage.py students list --search TEXT")
    return student


def courses_of(student: Student) -> list[Course]:
    """The courses whose synced roster holds the student (chat email or linked Google account)."""
    link = google_link(student)
    matches: sa.ColumnElement[bool] = CourseStudent.email.in_([student.email, *([link.google_email] if link else [])])
    if link is not None and link.google_user_id:
        matches = sa.or_(matches, CourseStudent.classroom_user_id == link.google_user_id)
    query = sa.select(Course).where(Course.id.in_(sa.select(CourseStudent.course_id).where(matches))).order_by(Course.alias)
    return list(db.session.scalars(query))


def google_link(student: Student) -> GoogleLink | None:
    return db.session.scalars(sa.select(GoogleLink).where(GoogleLink.student_id == student.id)).first()
