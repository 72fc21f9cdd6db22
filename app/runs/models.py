"""Lesson runs: one student's pass through one lesson, and the steps they passed."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import UTCDateTime, db, enum_column, utcnow
from app.students.models import Student


class RunStatus(enum.StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


ACTIVE = "status = 'active'"


class LessonRun(db.Model):  # type: ignore[name-defined]
    __tablename__ = "lesson_runs"
    __table_args__ = (
        # The poller's claims (migration 0007): each index holds only active runs, in claim order.
        sa.Index("ix_lesson_runs_active_due", "next_check_at",
                 postgresql_where=sa.text(f"{ACTIVE} AND next_check_at IS NOT NULL"),
                 sqlite_where=sa.text(f"{ACTIVE} AND next_check_at IS NOT NULL")),
        sa.Index("ix_lesson_runs_active_idle", "last_activity_at",
                 postgresql_where=sa.text(ACTIVE), sqlite_where=sa.text(ACTIVE)),
        sa.Index("ix_lesson_runs_unreminded", "last_activity_at",
                 postgresql_where=sa.text(f"{ACTIVE} AND reminded_at IS NULL"),
                 sqlite_where=sa.text(f"{ACTIVE} AND reminded_at IS NULL")),
        # At most one active run per student.
        sa.Index(
            "uq_lesson_runs_one_active",
            "student_id",
            unique=True,
            postgresql_where=sa.text(ACTIVE),
            sqlite_where=sa.text(ACTIVE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id", ondelete="CASCADE"), index=True)
    lesson_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), default=RunStatus.ACTIVE)
    step_index: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)
    # Platform data for this run, e.g. the hosted repository's name and clone URL.
    context: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    repo_name: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_failures: Mapped[int] = mapped_column(default=0)
    last_check_error: Mapped[str | None] = mapped_column(sa.Text)

    student: Mapped[Student] = relationship()
    results: Mapped[list[StepResult]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="StepResult.id"
    )

    def __repr__(self) -> str:
        return f"<LessonRun {self.id} {self.lesson_id} {self.status} step={self.step_index}>"


class StepEventKind(enum.StrEnum):
    HINT = "hint"
    NOT_YET = "not_yet"
    WRONG_ANSWER = "wrong_answer"


class StepResult(db.Model):  # type: ignore[name-defined]
    __tablename__ = "step_results"
    __table_args__ = (sa.UniqueConstraint("run_id", "step_id", name="uq_step_results_run_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("lesson_runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str] = mapped_column(sa.String(64))
    points: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=1)
    passed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How the step was confirmed: chat (check/answer), hook or poller.
    source: Mapped[str] = mapped_column(sa.String(16), default="chat")

    run: Mapped[LessonRun] = relationship(back_populates="results")


class StepEvent(db.Model):  # type: ignore[name-defined]
    """What happened on a step short of passing it (a hint asked, a "not yet", a wrong answer).

    Kept so that the lesson funnel shows where students struggle and why: the step a teacher
    should rewrite is the one with many hints and the same reason over and over.
    """

    __tablename__ = "step_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("lesson_runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[StepEventKind] = mapped_column(enum_column(StepEventKind))
    # The reason in English for a "not yet", the answer (normalized) for a wrong one.
    detail: Mapped[str] = mapped_column(sa.String(300), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
