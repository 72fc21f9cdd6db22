"""The admin pages: thin views over app.admin.queries (reading) and app.admin.actions (doing).

Every page needs a signed-in admin (Google sign-in lives in app.google.views); every POST
needs the form's CSRF token and, for an action, its "I confirm" box.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

from app import current
from app.admin import actions, charts, queries
from app.admin.texts import LANGUAGES, label
from app.db import db
from app.google.csrf import csrf_token, protect_posts
from app.google.views import admin_required
from app.outbox.models import OutboxStatus
from app.status.service import system_status

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static")
LANGUAGE_KEY = "admin_language"
MAX_QUERY_CHARS = 200
MAX_PAGE = 1_000_000
CSV_COLUMNS = ("id", "kind", "student", "name", "courses", "lesson", "points", "status", "attempts", "reason",
               "created_at", "sent_at")


class BadInput(Exception):
    """A parameter a person typed or edited is not usable; the message says which and why."""


def language() -> str:
    chosen = session.get(LANGUAGE_KEY)
    return chosen if chosen in LANGUAGES else current.settings().default_language


def t(key: str, **params: object) -> str:
    return label(key, language(), **params)


def duration(seconds: float | None) -> str:
    """A span as an admin reads it: 40 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "—"
    units = {"ru": ("с", "мин", "ч", "д"), "en": ("s", "min", "h", "d")}[language()]
    if seconds < 60:
        return f"{seconds:.0f} {units[0]}"
    if seconds < 3600:
        return f"{seconds / 60:.0f} {units[1]}"
    return f"{seconds / 3600:.1f} {units[2]}" if seconds < 86400 else f"{seconds / 86400:.1f} {units[3]}"


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "t": t, "lang": language(), "languages": LANGUAGES, "duration": duration,
            "when": when, "admin_email": session.get("admin_email"), "messages": get_flashed_messages}


def _message(title_key: str, message: str, status: int) -> Response:
    return Response(render_template("admin/message.html", title=t(title_key), message=message), status=status)


protect_posts(bp, lambda sentence: _message("error.form_refused", sentence, 400))


@bp.errorhandler(BadInput)
def _bad_input(error: BadInput) -> Response:
    return _message("error.bad_request", str(error), 400)


def _page_number() -> int:
    given = request.args.get("page", "1")
    if not given.isascii() or not given.isdigit() or not 1 <= int(given) <= MAX_PAGE:
        raise BadInput(t("error.bad_page"))
    return int(given)


def _search_text() -> str:
    text = request.args.get("q", "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise BadInput(t("error.query_too_long", max=MAX_QUERY_CHARS))
    if "\x00" in text:
        raise BadInput(t("error.nul"))
    return text


# --- pages --------------------------------------------------------------------------------------------

@bp.get("/")
@admin_required
def overview() -> Any:
    """Per course and lesson: how many students are where, and how their grades went."""
    hours = current.settings().stuck_after_hours
    return render_template("admin/overview.html", title=t("overview.title"), rows=queries.courses_overview(hours),
                           hours=f"{hours:g}")


@bp.get("/lessons/<lesson_id>")
@admin_required
def funnel(lesson_id: str) -> Any:
    """One lesson step by step: where students stop, how long they take, what they get wrong."""
    lesson = current.catalog().get(lesson_id)
    if lesson is None:
        return _message("error.not_found", t("funnel.unknown", lesson=lesson_id[:100]), 404)
    steps = queries.lesson_funnel(lesson.id, [step.id for step in lesson.steps], current.settings().stuck_after_hours)
    funnel_svg = charts.funnel_chart(steps, t("funnel.chart"), t("col.reached"), t("col.passed"), t("col.stuck_here"))
    times_svg = charts.completion_chart(queries.completion_times(lesson.id), t("funnel.times"), t("col.completed"))
    return render_template("admin/funnel.html", title=t("funnel.title", lesson=lesson.id), lesson=lesson, steps=steps,
                           funnel_svg=funnel_svg, times_svg=times_svg)


@bp.get("/students")
@admin_required
def students() -> Any:
    """Search by name or email (any part, any case), a page at a time."""
    text = _search_text()
    found = queries.search_students(text, _page_number())
    return render_template("admin/students.html", title=t("students.title"), q=text, found=found)


@bp.get("/students/<int:student_id>")
@admin_required
def student(student_id: int) -> Any:
    """A student's runs step by step, their conversation with the bot, their grades and what admins did."""
    view = queries.student_view(student_id)
    if view is None:
        return _message("error.not_found", t("error.no_student", id=student_id), 404)
    return render_template("admin/student.html", title=view.student.full_name or view.student.email, view=view,
                           catalog=current.catalog())


@bp.get("/grades")
@admin_required
def grades() -> Any:
    """Every grade and gradebook row: student, courses, lesson, points, status, reason, attempts."""
    status, course = _grade_filter()
    found = queries.list_grade_rows(status, course, _page_number())
    return render_template("admin/grades.html", title=t("grades.title"), found=found, status=status, course=course,
                           statuses=[s.value for s in OutboxStatus], courses=queries.course_aliases())


@bp.get("/grades.csv")
@admin_required
def grades_csv() -> Any:
    """The grades under the page's filter as CSV (UTF-8 with a BOM, so that spreadsheets read Cyrillic)."""
    status, course = _grade_filter()
    rows = queries.iter_grade_rows(status, course)
    name = "-".join(["lessonbot-grades", *(part for part in (course, status) if part)]) + ".csv"
    return Response(stream_with_context(_csv_lines(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _csv_lines(rows: Iterator[Any]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([row.id, row.kind, row.email or "", row.full_name or "", row.courses, row.lesson_id or "",
                         row.points or "", row.status, row.attempts, row.last_error or "", when(row.created_at),
                         when(row.sent_at)])
        yield buffer.getvalue()


def _grade_filter() -> tuple[str, str]:
    status, course = request.args.get("status", ""), request.args.get("course", "")
    if status and status not in {s.value for s in OutboxStatus}:
        raise BadInput(t("error.bad_status", status=status[:40]))
    if course and course not in queries.course_aliases():
        raise BadInput(t("error.bad_course", course=course[:64]))
    return status, course


@bp.get("/problems")
@admin_required
def problems() -> Any:
    """What is wrong and what to do: system checks, failed outbox items, dead letters."""
    report = system_status(current.settings())
    failed, failed_total = queries.failed_outbox()
    letters, letters_total = queries.dead_letters()
    return render_template("admin/problems.html", title=t("problems.title"), checks=report.checks, failed=failed,
                           failed_total=failed_total, letters=letters, letters_total=letters_total)


# --- actions ------------------------------------------------------------------------------------------

@bp.post("/language")
@admin_required
def set_language() -> Any:
    chosen = request.form.get("language", "")
    if chosen in LANGUAGES:
        session[LANGUAGE_KEY] = chosen
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/admin") and "\\" not in back else url_for("admin.overview"), 303)


def _act(action: Callable[[str], actions.Done], fallback: str) -> Any:
    """Confirmed? Then do it, commit, and go back to the student's page with what was done."""
    if request.form.get("confirm") != "yes":
        return _message("action.refused", t("action.unconfirmed"), 400)
    try:
        done = action(str(session.get("admin_email")))
    except actions.ActionNotFound as error:
        db.session.rollback()
        return _message("error.not_found", str(error), 404)
    except actions.ActionRefused as error:
        db.session.rollback()
        return _message("action.refused", str(error), 409)
    db.session.commit()
    flash(done.detail)
    if done.student_id is not None and fallback != "admin.grades":
        return redirect(url_for("admin.student", student_id=done.student_id), 303)
    return redirect(url_for(fallback), 303)


@bp.post("/runs/<int:run_id>/restart")
@admin_required
def restart_run(run_id: int) -> Any:
    return _act(lambda admin: actions.restart_run(run_id, admin, current.catalog(), current.settings()), "admin.students")


@bp.post("/runs/<int:run_id>/stop")
@admin_required
def stop_run(run_id: int) -> Any:
    return _act(lambda admin: actions.stop_run(run_id, admin, current.catalog(), current.settings()), "admin.students")


@bp.post("/runs/<int:run_id>/regrade")
@admin_required
def regrade_run(run_id: int) -> Any:
    return _act(lambda admin: actions.regrade_run(run_id, admin), "admin.students")


@bp.post("/outbox/<int:item_id>/resend")
@admin_required
def resend_reply(item_id: int) -> Any:
    return _act(lambda admin: actions.resend_reply(item_id, admin), "admin.problems")


@bp.post("/grades/retry")
@admin_required
def retry_grades() -> Any:
    return _act(actions.retry_failed_grades, "admin.grades")
