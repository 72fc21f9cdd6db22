"""Students linking their Google account from chat."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import db
from app.google.signin import link_url
from app.settings import Settings
from app.students.models import Student


def student_link_url(settings: Settings, student_email: str) -> str | None:
    """A one-time sign-in URL for the student (in the message's transaction); None without a Web client."""
    if not settings.has_google_client:
        return None
    student_id = db.session.scalar(sa.select(Student.id).where(Student.email == student_email.strip().lower()))
    if student_id is None:
        return None
    return link_url(settings, student_id)
