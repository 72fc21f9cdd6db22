"""Classroom courses known under short aliases."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow


class Course(db.Model):  # type: ignore[name-defined]
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), unique=True)
    classroom_name: Mapped[str] = mapped_column(sa.String(300))
    classroom_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CourseStudent(db.Model):  # type: ignore[name-defined]
    """A student on a course's Classroom roster (imported by `courses sync`)."""

    __tablename__ = "course_students"
    __table_args__ = (sa.UniqueConstraint("course_id", "classroom_user_id", name="uq_course_students_course_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(sa.ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    # Indexed alone too: grading and the admin pages find a linked student's courses by it.
    classroom_user_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    email: Mapped[str | None] = mapped_column(sa.String(254), index=True)
    full_name: Mapped[str] = mapped_column(sa.String(200), default="")
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assignment(db.Model):  # type: ignore[name-defined]
    """A lesson's courseWork in a course; only work the app created can be graded by it."""

    __tablename__ = "assignments"
    __table_args__ = (sa.UniqueConstraint("course_id", "lesson_id", name="uq_assignments_course_lesson"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(sa.ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    lesson_id: Mapped[str] = mapped_column(sa.String(64))
    coursework_id: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(300))
    max_points: Mapped[int] = mapped_column(default=100)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
