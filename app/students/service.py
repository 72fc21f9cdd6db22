"""Finding and creating students."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.db import db
from app.students.models import Student


def get_or_create_student(email: str, full_name: str, zulip_user_id: int | None, language: str) -> Student:
    """The student with this email, created on first contact, locked for this transaction."""
    email = email.strip().lower()
    query = sa.select(Student).where(Student.email == email).with_for_update()
    student = db.session.scalars(query).one_or_none()
    if student is None:
        try:
            with db.session.begin_nested():
                student = Student(email=email, full_name=full_name, zulip_user_id=zulip_user_id, language=language)
                db.session.add(student)
            return student
        except IntegrityError:  # created by a concurrent first message
            student = db.session.scalars(query).one()
    if full_name and student.full_name != full_name:
        student.full_name = full_name
    if zulip_user_id is not None and student.zulip_user_id is None:
        student.zulip_user_id = zulip_user_id
    return student
