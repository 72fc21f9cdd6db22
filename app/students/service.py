"""Finding and creating students."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa

from app.db import db, upsert_insert
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
            "zulip_user_id": sa.func.coalesce(STUDENTS.c.zulip_user_id, insert.excluded.zulip_user_id),
        },
    ).returning(STUDENTS.c.id, STUDENTS.c.email, STUDENTS.c.language, STUDENTS.c.zulip_user_id)


def get_or_create_student(email: str, full_name: str, zulip_user_id: int | None, language: str) -> StudentRef:
    """The student with this email, created on first contact and locked for this transaction.

    One upsert statement: it creates the row or refreshes the name, and in both cases
    holds the row lock, so one student's messages are handled one at a time.
    """
    params = {"email": email.strip().lower(), "full_name": full_name, "zulip_user_id": zulip_user_id, "language": language}
    row = db.session.execute(_upsert_statement(db.engine.dialect.name), params).one()
    return StudentRef(row.id, row.email, row.language, row.zulip_user_id)


def set_language(student_id: int, language: str) -> None:
    db.session.execute(sa.update(STUDENTS).where(STUDENTS.c.id == student_id).values(language=language))
