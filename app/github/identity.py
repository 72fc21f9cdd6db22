"""A student's GitHub login: claimed in chat (`link github <login>`), confirmed on GitHub.

Anyone can type any login, so a claim alone proves nothing: the run's repository invites
that account, and only its owner can accept the invitation. The first step of a GitHub
lesson checks that the invitation was accepted, which confirms the login; a login
confirmed for one student cannot be claimed by another.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from app.db import db, utcnow
from app.i18n import Text
from app.students.models import Student

# GitHub's rule: letters, digits and single hyphens, not at either end, at most 39 characters.
LOGIN = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,38}")


def _student(email: str) -> Student | None:
    return db.session.scalars(sa.select(Student).where(Student.email == email.strip().lower())).first()


def _confirmed_by_other(login: str, student_id: int) -> bool:
    query = sa.select(Student.id).where(Student.github_login == login, Student.github_confirmed_at.is_not(None),
                                        Student.id != student_id)
    return db.session.scalar(query) is not None


def claim_login(student_email: str, login: str) -> Text:
    """Record the login the student says is theirs (in the caller's transaction); what to tell them."""
    login = login.strip().removeprefix("@").lower()
    if not LOGIN.fullmatch(login):
        return Text("github.link_bad_login", login=login[:60])
    student = _student(student_email)
    if student is None:
        return Text("github.link_bad_login", login=login)
    if _confirmed_by_other(login, student.id):
        return Text("github.link_taken", login=login)
    if student.github_login == login and student.github_confirmed_at is not None:
        return Text("github.link_confirmed", login=login)
    student.github_login, student.github_confirmed_at = login, None
    return Text("github.link_claimed", login=login)


def claimed_login(student_email: str) -> str | None:
    student = _student(student_email)
    return student.github_login if student is not None else None


def confirm_login(student_email: str, login: str) -> bool:
    """Mark the login confirmed (its owner accepted our invitation); False if another student has it confirmed."""
    student = _student(student_email)
    if student is None or student.github_login != login:
        return False
    if _confirmed_by_other(login, student.id):
        return False
    if student.github_confirmed_at is None:
        student.github_confirmed_at = utcnow()
    return True
