"""Delivering grades to Classroom and rows to the gradebook sheet, from the outbox.

Exactly once: before patching, the submission is read; a grade that is already there is
not written again, and a submission already returned with it is done. So an attempt that
reached Google but whose answer was lost (timeout, 5xx, dropped connection) is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.courses.models import Assignment, Course, CourseStudent
from app.courses.service import CourseError, adopt_by_title, assignment_for, not_ours_reason
from app.db import db, utcnow
from app.google.client import GoogleError, NotAuthorized, call, service
from app.grading import sheets
from app.i18n import Text
from app.lessons.catalog import Catalog
from app.lessons.schema import Lesson
from app.loop import backoff
from app.metrics.registry import GRADE_DELIVERIES
from app.outbox.dispatcher import Dispatcher, Handler, Outcome
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.outbox.service import queue_reply
from app.runs.models import LessonRun
from app.settings import Settings
from app.students.models import Student
from app.students.service import google_link

log = logging.getLogger(__name__)
NOT_ENROLLED_WAIT = timedelta(hours=6)
NOT_AUTHORIZED_WAIT = timedelta(minutes=30)
QUOTA_REASONS = ("rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_EXHAUSTED")
QUOTA_RETRIES = "quota_retries"  # payload key: attempts that met a quota error (they never fail a grade)


class Permanent(Exception):
    """Trying again will not help until an admin acts; the message says what to do."""


class Waiting(Exception):
    """Nothing to grade yet (the student is in no synced course); wait for a link or a roster sync."""


@dataclass(frozen=True)
class Who:
    student: Student
    emails: list[str]
    user_id: str | None


def _who(student: Student) -> Who:
    link = google_link(student)
    emails = [link.google_email] if link else []
    emails += [student.email] if student.email not in emails else []
    return Who(student, emails, link.google_user_id if link else None)


def _enrolled_courses(who: Who) -> list[Course]:
    matches = sa.or_(CourseStudent.email.in_(who.emails),
                     CourseStudent.classroom_user_id == who.user_id if who.user_id else sa.false())
    query = sa.select(Course).where(Course.id.in_(sa.select(CourseStudent.course_id).where(matches))).order_by(Course.alias)
    return list(db.session.scalars(query))


def _targets(settings: Settings, who: Who, lesson: Lesson) -> list[tuple[Course, Assignment]]:
    courses = _enrolled_courses(who)
    if not courses:
        linked = "" if who.user_id else " and has not linked a Google account (they can write `link` to the bot)"
        raise Waiting(f"{who.student.email} is in no synced Classroom course{linked}; the grade waits "
                      f"(./manage.py courses sync after adding them in Classroom)")
    targets, missing = [], []
    for course in courses:
        try:
            assignment = assignment_for(course.id, lesson.id) or adopt_by_title(settings, course, lesson)
        except CourseError as error:
            raise Permanent(str(error)) from None
        if assignment is None:
            missing.append(course.alias)
        else:
            targets.append((course, assignment))
    if not targets:
        raise Permanent(f"course {', '.join(missing)} has no assignment for lesson {lesson.id}; fix: ./manage.py "
                        f"assignments create --course {missing[0]} --lesson {lesson.id}, then ./manage.py grades sync")
    return targets


def _denied(error: GoogleError) -> bool:
    return error.status == 403 and ("ProjectPermissionDenied" in str(error) or error.reason == "PERMISSION_DENIED")


def _find_submission(submissions: Any, course: Course, assignment: Assignment, who: Who) -> dict[str, Any] | None:
    what = f"finding {who.student.email}'s submission in {course.alias}"
    for user in ([who.user_id] if who.user_id else []) + who.emails:
        try:
            page = call(submissions.list(courseId=course.classroom_id, courseWorkId=assignment.coursework_id, userId=user),
                        what)
        except GoogleError as error:
            if error.status in (400, 404):  # not a Classroom user under this id or email
                continue
            raise
        found = page.get("studentSubmissions") or []
        if found:
            return dict(found[0])
    return None


def _grade_in(settings: Settings, course: Course, assignment: Assignment, who: Who, points: int) -> str:
    """Set assignedGrade and draftGrade (unless already set), then return; the submission id."""
    submissions = service(settings, "classroom").courses().courseWork().studentSubmissions()
    try:
        submission = _find_submission(submissions, course, assignment, who)
        if submission is None:
            raise Permanent(f"{' / '.join(who.emails)} is not a student of course {course.alias} in Classroom (no "
                            f"submission for “{assignment.title}”); fix: add them to the course in Classroom, or ask "
                            f"them to `link` the Google account they use there; then ./manage.py grades sync")
        ids = {"courseId": course.classroom_id, "courseWorkId": assignment.coursework_id, "id": submission["id"]}
        changed = submission.get("assignedGrade") != points or submission.get("draftGrade") != points
        if changed:
            call(submissions.patch(**ids, updateMask="assignedGrade,draftGrade",
                                   body={"assignedGrade": points, "draftGrade": points}), f"grading in {course.alias}")
        if changed or submission.get("state") != "RETURNED":
            call(submissions.return_(**ids, body={}), f"returning the submission in {course.alias}")
        return str(submission["id"])
    except GoogleError as error:
        if _denied(error):
            raise Permanent(not_ours_reason(course, assignment.lesson_id, assignment.title)) from None
        raise


def deliver_grade(item: OutboxItem, settings: Settings, catalog: Catalog) -> None:
    """Write the run's grade into every course the student is in that has the lesson's assignment."""
    run = db.session.get(LessonRun, item.payload["run_id"])
    lesson = catalog.get(str(item.payload["lesson_id"]))
    if run is None or lesson is None:
        raise Permanent(f"run {item.payload['run_id']} or lesson {item.payload['lesson_id']} no longer exists")
    who = _who(run.student)
    delivered = dict(item.payload.get("delivered") or {})
    for course, assignment in _targets(settings, who, lesson):
        key = f"{course.classroom_id}/{assignment.coursework_id}"
        if delivered.get(key) == item.payload["points"]:
            continue
        submission_id = _grade_in(settings, course, assignment, who, int(item.payload["points"]))
        delivered[key] = item.payload["points"]
        item.payload = {**item.payload, "delivered": delivered}
        item.external_id = submission_id


# --- scheduling -----------------------------------------------------------------------------


def failure_backoff(failures: int, retry_after: float | None) -> float:
    """After a transient failure: doubling from 2 s up to 10 minutes; Retry-After wins."""
    return backoff(failures, initial=2.0, maximum=600.0, at_least=retry_after)


def quota_backoff(retries: int, retry_after: float | None, cap: float) -> float:
    """Google's truncated exponential back-off for quota errors: doubling up to ``cap`` (60 s), then
    steady at the cap, so a grade goes out within a minute of Classroom answering again. Retry-After wins."""
    return backoff(retries, initial=2.0, maximum=cap, at_least=retry_after)


def _is_quota(error: GoogleError) -> bool:
    return error.status == 429 or error.reason in QUOTA_REASONS


def _tell_not_enrolled(item: OutboxItem, settings: Settings, catalog: Catalog) -> None:
    """Tell the student once why the grade waits, and what they can do.

    Without a Web OAuth client `link` cannot work, so the student is not asked to write it:
    they hear that the grade is kept and where it goes once Google is set up (the demo).
    """
    if item.payload.get("told_not_enrolled") or item.student_id is None:
        return
    student = db.session.get(Student, item.student_id)
    if student is None:
        return
    lesson = catalog.get(str(item.payload["lesson_id"]))
    if lesson is not None and not settings.has_google_client:
        text = Text("grade.kept", title=lesson.title, points=item.payload["points"], max_points=lesson.max_points)
    else:
        text = Text("grade.not_enrolled", lesson=item.payload["lesson_id"])
    queue_reply(student, text.render(student.language))
    item.payload = {**item.payload, "told_not_enrolled": True}


def attempt(item: OutboxItem, settings: Settings, catalog: Catalog) -> Outcome:
    """One delivery attempt; updates the item and returns its outcome."""
    now = utcnow()
    item.attempts += 1
    item.last_attempt_at = now
    try:
        if item.kind == OutboxKind.GRADE:
            deliver_grade(item, settings, catalog)
        else:
            sheets.deliver_row(item, settings, catalog)
    except NotAuthorized as error:
        return _wait(item, str(error), NOT_AUTHORIZED_WAIT)
    except Waiting as error:
        _tell_not_enrolled(item, settings, catalog)
        return _wait(item, str(error), NOT_ENROLLED_WAIT)
    except GoogleError as error:
        if not error.transient:
            return _fail(item, str(error))
        item.ambiguous = item.ambiguous or error.ambiguous
        item.last_error = str(error)
        if _is_quota(error):  # Google asks us to slow down, not to give up: retry at most a minute apart
            retries = int(item.payload.get(QUOTA_RETRIES, 0)) + 1
            item.payload = {**item.payload, QUOTA_RETRIES: retries}
            wait = quota_backoff(retries, error.retry_after, settings.grade_quota_backoff_max_seconds)
            item.next_attempt_at = now + timedelta(seconds=wait)
            return Outcome.RETRY
        failures = item.attempts - int(item.payload.get(QUOTA_RETRIES, 0))
        if failures >= settings.grade_max_attempts:
            return _fail(item, f"gave up after {failures} failed attempts; last error: {error}; retry: ./manage.py grades sync")
        item.next_attempt_at = now + timedelta(seconds=failure_backoff(failures, error.retry_after))
        return Outcome.RETRY
    except Permanent as error:
        return _fail(item, str(error))
    item.mark_sent()
    item.ambiguous = False
    return Outcome.SENT


def _wait(item: OutboxItem, reason: str, wait: timedelta) -> Outcome:
    item.attempts = 0  # waiting is not failing: nothing is retried in a loop, a link, sync or `google auth` wakes it
    item.payload = {key: value for key, value in item.payload.items() if key != QUOTA_RETRIES}
    item.last_error = reason
    item.next_attempt_at = utcnow() + wait
    return Outcome.WAITING


def _fail(item: OutboxItem, reason: str) -> Outcome:
    item.status = OutboxStatus.FAILED
    item.last_error = reason[:2000]
    log.warning("outbox %s (%s) failed: %s", item.id, item.kind.value, reason, extra={"outbox_id": item.id})
    return Outcome.FAILED


class GradeDelivery:
    """The outbox handler of grades (and, as :class:`SheetRowDelivery`, of gradebook rows).

    Unordered: each item is its own queue. One attempt holds its row for the whole call to
    Google, and the submission is read before it is patched, so nothing is written twice.
    """

    name = "grades"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.GRADE,)
    ordered = False
    lock_class = 7304  # pg advisory lock namespace: one attempt per grade at a time

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog

    def deliver(self, item: OutboxItem) -> Outcome:
        outcome = attempt(item, self.settings, self.catalog)
        GRADE_DELIVERIES.labels(item.kind.value, outcome.value).inc()
        return outcome


class SheetRowDelivery(GradeDelivery):
    name = "sheet rows"
    kinds: tuple[OutboxKind, ...] = (OutboxKind.SHEET_ROW,)
    lock_class = 7305


def grading_handlers(settings: Settings, catalog: Catalog) -> list[Handler]:
    return [GradeDelivery(settings, catalog), SheetRowDelivery(settings, catalog)]


def deliver_due(settings: Settings, catalog: Catalog) -> int:
    """Deliver the grades and rows that are due now, as a dispatcher pass would; how many were tried."""
    with Dispatcher(grading_handlers(settings, catalog)) as dispatcher:
        return dispatcher.deliver_due()


Sleep = Callable[[float], None]


@dataclass
class SyncReport:
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for value in self.outcomes.values() if value is outcome)


def sync(settings: Settings, catalog: Catalog, *, rounds: int = 30, sleep: Sleep,
         on_item: Callable[[int, Outcome], None] = lambda item_id, outcome: None) -> SyncReport:
    """Try every pending grade now; repeat those that hit 429/5xx after their back-off, for a bounded number of rounds."""
    report = SyncReport()
    with Dispatcher(grading_handlers(settings, catalog)) as dispatcher:
        for _ in range(rounds):
            if not _sync_round(dispatcher, report, on_item, sleep):
                break
    return report


def _sync_round(dispatcher: Dispatcher, report: SyncReport, on_item: Callable[[int, Outcome], None], sleep: Sleep) -> bool:
    """Try each pending item once; if some must be retried, wait for the soonest. False when none must."""
    tried: list[int] = []
    for handler in dispatcher.handlers:
        while (result := dispatcher.process_one(handler, due_only=False, exclude=tried)) is not None:
            item_id, outcome = result[0], result[1] or Outcome.RETRY  # a crash was rescheduled
            tried.append(item_id)
            report.outcomes[item_id] = outcome
            on_item(item_id, outcome)
    retrying = [i for i, outcome in report.outcomes.items() if outcome is Outcome.RETRY]
    if not retrying:
        return False
    sleep(_wait_for(retrying))
    return True


def _wait_for(item_ids: list[int]) -> float:
    soonest = db.session.scalar(sa.select(sa.func.min(OutboxItem.next_attempt_at)).where(OutboxItem.id.in_(item_ids)))
    db.session.rollback()
    if soonest is None:
        return 0.0
    return max(0.0, min(60.0, (soonest - utcnow()).total_seconds()))
