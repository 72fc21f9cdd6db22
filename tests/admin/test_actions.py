"""Admin actions: each does its effect through the outbox, is recorded with who and when, and needs the
form's CSRF token and a confirmation."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.admin.models import AdminAction
from app.db import db, utcnow
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun, RunStatus, StepResult
from tests.admin.conftest import ADMIN, csrf_from
from tests.admin.seed import Seeded, seed_course


def _post(admin: FlaskClient, path: str, page: str, **form: str) -> object:
    return admin.post(path, data={"csrf_token": csrf_from(admin.get(page).text), "confirm": "yes", **form})


def _replies_to(student_id: int) -> list[str]:
    items = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.student_id == student_id,
                                                           OutboxItem.kind == OutboxKind.CHAT_REPLY,
                                                           OutboxItem.status == OutboxStatus.PENDING))
    return [str(item.payload["content"]) for item in items]


def _recorded(student_id: int | None) -> list[AdminAction]:
    return list(db.session.scalars(sa.select(AdminAction).where(AdminAction.student_id == student_id)))


@pytest.fixture
def small(app: Flask) -> Seeded:
    return seed_course(db, 10)  # k = 1 completed (grade waiting), 2 completed (failed), 3 stopped, 4 active, 7 stuck


def test_restart_puts_the_run_back_on_step_one_tells_the_student_and_is_recorded(admin: FlaskClient, small: Seeded) -> None:
    run_id, student_id = small.run_of_state["stuck"], small.student_of_state["stuck"]
    page = f"/admin/students/{student_id}"
    done = _post(admin, f"/admin/runs/{run_id}/restart", page)
    assert done.status_code == 303 and done.headers["Location"] == page  # type: ignore[attr-defined]
    old = db.session.get(LessonRun, run_id)  # kept as history, as `manage.py runs restart` keeps it
    assert old is not None and old.status == RunStatus.STOPPED and old.step_index == 1 and old.points == 20
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StepResult).where(StepResult.run_id == run_id)) == 1
    new = db.session.scalars(sa.select(LessonRun).where(LessonRun.student_id == student_id,
                                                        LessonRun.status == RunStatus.ACTIVE)).one()
    assert (new.lesson_id, new.step_index, new.points) == ("git-basics", 0, 0) and new.id != run_id
    [reply] = _replies_to(student_id)
    assert "Преподаватель начал ваш урок `git-basics` заново" in reply and "Шаг 1 из 7" in reply  # k = 7: Russian
    [action] = _recorded(student_id)
    assert action.admin_email == ADMIN and action.action == "restart"
    assert abs(action.at - utcnow()) < timedelta(minutes=1)
    shown = admin.get(page).text
    assert f"run {run_id} (git-basics) restarted as run {new.id}" in shown
    assert ADMIN in shown.split("Admin actions")[1]


def test_restart_is_refused_while_the_student_is_in_another_run(admin: FlaskClient, small: Seeded) -> None:
    student_id = small.student_of_state["active"]
    old = LessonRun(student_id=student_id, lesson_id="zulip-basics", status=RunStatus.STOPPED, context={})
    db.session.add(old)
    db.session.commit()
    refused = _post(admin, f"/admin/runs/{old.id}/restart", f"/admin/students/{student_id}")
    assert refused.status_code == 409  # type: ignore[attr-defined]
    assert "stop it first" in refused.text  # type: ignore[attr-defined]
    assert db.session.get(LessonRun, old.id).status == RunStatus.STOPPED  # type: ignore[union-attr]
    assert _recorded(student_id) == [] and _replies_to(student_id) == []


def test_stop_ends_an_active_run_and_tells_the_student(admin: FlaskClient, small: Seeded) -> None:
    run_id, student_id = small.run_of_state["active"], small.student_of_state["active"]
    assert _post(admin, f"/admin/runs/{run_id}/stop", f"/admin/students/{student_id}").status_code == 303  # type: ignore[attr-defined]
    run = db.session.get(LessonRun, run_id)
    assert run is not None and run.status == RunStatus.STOPPED and run.finished_at is not None
    [reply] = _replies_to(student_id)
    assert "Your teacher stopped your lesson `git-basics`; your 60 points stay on record" in reply  # k = 4: English
    assert [action.action for action in _recorded(student_id)] == ["stop"]
    again = _post(admin, f"/admin/runs/{run_id}/stop", f"/admin/students/{student_id}")
    assert again.status_code == 409 and "already ended: stopped" in again.text  # type: ignore[attr-defined]


def test_regrade_queues_a_failed_grade_again(admin: FlaskClient, small: Seeded) -> None:
    run_id, student_id = small.run_of_state["completed"], small.student_of_state["completed"]
    item = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.dedupe_key == f"grade:run:{run_id}")).one()
    item.status, item.payload = OutboxStatus.FAILED, {**item.payload, "delivered": {"c/w": 100}}
    db.session.commit()
    assert _post(admin, f"/admin/runs/{run_id}/regrade", f"/admin/students/{student_id}").status_code == 303  # type: ignore[attr-defined]
    db.session.refresh(item)  # the failed grade goes again (not doubled); what Classroom already has stays on record
    assert item.status == OutboxStatus.PENDING and item.attempts == 0 and item.payload["delivered"] == {"c/w": 100}
    assert item.payload["points"] == 100 and item.payload["requested_by"] == ADMIN
    assert [action.action for action in _recorded(student_id)] == ["regrade"]
    stopped = _post(admin, f"/admin/runs/{small.run_of_state['stopped']}/regrade", "/admin/")
    assert stopped.status_code == 409 and "only a completed run has a grade" in stopped.text  # type: ignore[attr-defined]


def test_resend_puts_a_failed_reply_back_in_the_queue(admin: FlaskClient, small: Seeded) -> None:
    [item_id] = small.failed_replies
    student_id = small.student_of_state["stopped"]
    assert _post(admin, f"/admin/outbox/{item_id}/resend", "/admin/problems").status_code == 303  # type: ignore[attr-defined]
    item = db.session.get(OutboxItem, item_id)
    assert item is not None and item.status == OutboxStatus.PENDING and item.attempts == 0
    [action] = _recorded(student_id)
    assert "the user is deactivated" in action.detail
    again = _post(admin, f"/admin/outbox/{item_id}/resend", "/admin/problems")
    assert again.status_code == 409  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/admin/runs/999999/restart", "/admin/runs/999999/stop", "/admin/runs/999999/regrade",
                                  "/admin/outbox/999999/resend"])
def test_an_action_on_something_unknown_is_a_404_with_a_sentence(admin: FlaskClient, path: str) -> None:
    refused = _post(admin, path, "/admin/")
    assert refused.status_code == 404 and re.search(r"There is no (run|chat reply) 999999\.", refused.text)  # type: ignore[attr-defined]


def _state(run_id: int, item_id: int) -> tuple[object, ...]:
    db.session.expire_all()
    run, item = db.session.get(LessonRun, run_id), db.session.get(OutboxItem, item_id)
    assert run is not None and item is not None
    return run.status, run.step_index, item.status, db.session.scalar(sa.select(sa.func.count()).select_from(AdminAction))


@pytest.mark.parametrize("form", [{}, {"csrf_token": "forged"}, {"confirm": "yes"}, {"confirm": "yes", "csrf_token": "x"}])
def test_an_action_without_the_forms_token_is_refused_and_changes_nothing(admin: FlaskClient, small: Seeded,
                                                                          form: dict[str, str]) -> None:
    run_id, [item_id] = small.run_of_state["active"], small.failed_replies
    admin.get("/admin/")  # the session has a CSRF secret; the form just does not carry its token
    before = _state(run_id, item_id)
    for path in (f"/admin/runs/{run_id}/stop", f"/admin/runs/{run_id}/restart", f"/admin/outbox/{item_id}/resend",
                 "/admin/grades/retry", "/admin/language"):
        refused = admin.post(path, data=form)
        assert refused.status_code == 400 and "did not come from this site" in refused.text, path
    assert _state(run_id, item_id) == before


def test_an_unconfirmed_action_is_refused_and_changes_nothing(admin: FlaskClient, small: Seeded) -> None:
    run_id, [item_id] = small.run_of_state["active"], small.failed_replies
    before = _state(run_id, item_id)
    token = csrf_from(admin.get("/admin/").text)
    for path in (f"/admin/runs/{run_id}/stop", f"/admin/outbox/{item_id}/resend", "/admin/grades/retry"):
        refused = admin.post(path, data={"csrf_token": token})
        assert refused.status_code == 400 and "Tick “I confirm”" in refused.text
    assert _state(run_id, item_id) == before


def test_someone_not_signed_in_cannot_act(client: FlaskClient, small: Seeded) -> None:
    run_id = small.run_of_state["active"]
    client.get("/admin/login")
    refused = client.post(f"/admin/runs/{run_id}/stop", data={"confirm": "yes"})
    assert refused.status_code == 400  # no CSRF token in a session that never saw a form
    assert db.session.get(LessonRun, run_id).status == RunStatus.ACTIVE  # type: ignore[union-attr]


# --- grades ---------------------------------------------------------------------------------------------

def _grade_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-id="(\d+)">', html)]


def test_grades_filter_by_status_and_course(admin: FlaskClient, seeded: Seeded) -> None:
    every = admin.get("/admin/grades").text
    assert f"Items: {sum(seeded.grades.values())}" in every and "seed.student" in every
    for status in ("sent", "pending", "failed"):
        assert f"Items: {seeded.grades[status]}" in admin.get(f"/admin/grades?status={status}").text
        on_course = admin.get(f"/admin/grades?status={status}&course=seed").text
        assert f"Items: {seeded.grades_on_roster[status]}" in on_course
    refused = admin.get("/admin/grades?status=lost")
    assert refused.status_code == 400 and "There is no grade status lost." in refused.text
    assert admin.get("/admin/grades?course=nope").status_code == 400


def test_the_grades_csv_holds_every_filtered_row(admin: FlaskClient, seeded: Seeded) -> None:
    response = admin.get("/admin/grades.csv?status=failed&course=seed")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="lessonbot-grades-seed-failed.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert len(rows) == seeded.grades_on_roster["failed"]
    assert {row["status"] for row in rows} == {"failed"} and {row["courses"] for row in rows} == {"seed"}
    assert all(row["student"].endswith("@school.example") and row["points"] == "100" and row["reason"] for row in rows)
    everything = list(csv.DictReader(io.StringIO(admin.get("/admin/grades.csv").data.decode("utf-8-sig"))))
    assert len(everything) == sum(seeded.grades.values())
    assert {"Студент 1", "Student 10"} <= {row["name"] for row in everything}  # completed: k = 1 (Russian name), 10


def test_retry_puts_every_failed_grade_back_in_the_queue(admin: FlaskClient, seeded: Seeded) -> None:
    done = _post(admin, "/admin/grades/retry", "/admin/grades")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/grades"  # type: ignore[attr-defined]
    failed = sa.select(sa.func.count()).select_from(OutboxItem).where(OutboxItem.kind == OutboxKind.GRADE,
                                                                      OutboxItem.status == OutboxStatus.FAILED)
    assert db.session.scalar(failed) == 0
    [action] = _recorded(None)
    assert action.detail == f"{seeded.grades['failed']} failed grade(s) and row(s) queued again"
    assert action.detail in admin.get("/admin/grades").text  # the flash
