"""The gradebook sheet: one row per student and lesson, exported on demand or appended on completion."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.courses.models import Course
from app.db import db
from app.google.client import call, service
from app.grading.service import grade_items
from app.lessons.catalog import Catalog
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun, RunStatus
from app.settings import Settings
from app.students.models import Student
from app.students.service import google_link, in_course

HEADER = ["Student", "Emails", "Lesson", "Points", "Max points", "Completed at", "Classroom status", "Run"]
COLUMNS = "A1:H"


def _classroom_status(run_id: int) -> str:
    items = grade_items(run_id)
    if not items:
        return "not queued"
    item = items[-1]  # after a regrade, the newest says where the grade is
    if item.status == OutboxStatus.FAILED:
        return f"failed: {item.last_error or ''}"[:300]
    return "returned" if item.status == OutboxStatus.SENT else "pending"


def row_for(run: LessonRun, catalog: Catalog) -> list[Any]:
    student = run.student
    link = google_link(student)
    emails = ", ".join(dict.fromkeys([e for e in (link.google_email if link else None, student.email) if e]))
    lesson = catalog.get(run.lesson_id)
    finished = run.finished_at.strftime("%Y-%m-%d %H:%M:%S") if isinstance(run.finished_at, datetime) else ""
    return [student.full_name or student.email, emails, run.lesson_id, run.points, lesson.max_points if lesson else "",
            finished, _classroom_status(run.id), run.id]


def _latest_completed(course: Course | None) -> Iterator[LessonRun]:
    """The newest completed run per student and lesson (optionally only the course's students)."""
    newest = (sa.select(sa.func.max(LessonRun.id)).where(LessonRun.status == RunStatus.COMPLETED)
              .group_by(LessonRun.student_id, LessonRun.lesson_id))
    query = sa.select(LessonRun).join(Student).where(LessonRun.id.in_(newest)).order_by(Student.email, LessonRun.lesson_id)
    if course is not None:
        query = query.where(Student.id.in_(in_course(course)))
    yield from db.session.scalars(query)


def export(settings: Settings, catalog: Catalog, sheet_id: str, course: Course | None = None) -> int:
    """Write the whole gradebook (header + rows) over the sheet's first tab; returns the number of rows."""
    rows = [row_for(run, catalog) for run in _latest_completed(course)]
    values = service(settings, "sheets").spreadsheets().values()
    existing = call(values.get(spreadsheetId=sheet_id, range=COLUMNS), "reading the gradebook").get("values", [])
    padding = [[""] * len(HEADER) for _ in range(max(0, len(existing) - len(rows) - 1))]
    body = {"range": f"A1:H{1 + len(rows) + len(padding)}", "majorDimension": "ROWS", "values": [HEADER, *rows, *padding]}
    call(values.update(spreadsheetId=sheet_id, range=body["range"], valueInputOption="RAW", body=body),
         "writing the gradebook")
    return len(rows)


def deliver_row(item: OutboxItem, settings: Settings, catalog: Catalog) -> None:
    """Append one completion's row; after an attempt that may have landed, look for it first."""
    run = db.session.get(LessonRun, item.payload["run_id"])
    if run is None:
        return
    sheet_id = str(item.payload["sheet_id"])
    values = service(settings, "sheets").spreadsheets().values()
    if item.ambiguous:
        present = call(values.get(spreadsheetId=sheet_id, range="H1:H"), "reading the gradebook").get("values", [])
        if [str(run.id)] in [[str(cell) for cell in row] for row in present]:
            return
    assert item.kind == OutboxKind.SHEET_ROW
    call(values.append(spreadsheetId=sheet_id, range=COLUMNS, valueInputOption="RAW", insertDataOption="INSERT_ROWS",
                       body={"values": [row_for(run, catalog)]}), "appending to the gradebook")
