"""The gradebook sheet: a full export, and live rows through the outbox within the Sheets quota."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.grading.delivery import deliver_due
from app.grading.sheets import HEADER, export
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from tests.google.conftest import GoogleWorld
from tests.google.test_grades import _classroom, _finish_quiz


def test_grades_export_writes_one_row_per_student_and_lesson(app: Flask, client: FlaskClient, runner: Any,
                                                             authorized: GoogleWorld, settings: Settings,
                                                             tmp_path: Path) -> None:
    gs = authorized.gs
    sheet = gs.add_spreadsheet("Gradebook")
    _classroom(authorized, settings, app, ["ann@example.com"])
    _finish_quiz(client, "ann@example.com", tmp_path)
    _finish_quiz(client, "outsider@example.com", tmp_path)
    deliver_due(settings, app.extensions["lessonbot.catalog"])

    result = runner.invoke(args=["grades", "export", "--sheet", sheet])
    assert result.exit_code == 0 and "wrote 2 rows" in result.output, result.output
    rows = gs.sheet_values(sheet, "Sheet1!A1:H")
    assert rows[0] == HEADER
    ann = next(row for row in rows if row[1] == "ann@example.com")
    assert ann[2:5] == ["git-quiz", 10, 10] and ann[6] == "returned"
    outsider = next(row for row in rows if row[1] == "outsider@example.com")
    assert outsider[6] == "pending"

    assert export(settings, app.extensions["lessonbot.catalog"], sheet, _course("git1")) == 1
    assert len([row for row in gs.sheet_values(sheet, "Sheet1!A1:H") if any(row)]) == 2  # old rows cleared


def _course(alias: str) -> Any:
    from app.courses.service import get_course

    return get_course(alias)


def test_live_rows_go_through_the_outbox_within_the_quota(app: Flask, client: FlaskClient, authorized: GoogleWorld,
                                                          settings: Settings, tmp_path: Path) -> None:
    gs = authorized.gs
    sheet = gs.add_spreadsheet("Live")
    app.extensions["lessonbot.settings"] = settings.model_copy(update={"google_sheet_id": sheet})
    gs.sheets_quota.configure(read_per_minute=60, write_per_minute=1)
    for email in ("a@example.com", "b@example.com"):
        _finish_quiz(client, email, tmp_path)
    catalog = app.extensions["lessonbot.catalog"]
    deliver_due(settings, catalog)
    rows = _rows()
    assert sorted(item.status for item in rows) == [OutboxStatus.PENDING, OutboxStatus.SENT]  # the 2nd hit the quota
    waiting = next(item for item in rows if item.status == OutboxStatus.PENDING)
    assert "429" in str(waiting.last_error)
    gs.clock.advance(61)
    db.session.execute(sa.update(OutboxItem).values(next_attempt_at=sa.func.now()))
    db.session.commit()
    deliver_due(settings, catalog)
    assert all(item.status == OutboxStatus.SENT for item in _rows())
    values = gs.sheet_values(sheet, "Sheet1!A1:H")
    assert sorted(row[1] for row in values) == ["a@example.com", "b@example.com"]


def _rows() -> list[OutboxItem]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == OutboxKind.SHEET_ROW)))
