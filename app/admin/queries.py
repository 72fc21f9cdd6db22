"""What the admin pages show, read with a fixed number of aggregate queries per page.

PostgreSQL does the counting (GROUP BY, FILTER, percentile_cont, window functions), so a
page costs the same handful of queries with 100 students or 10 000, and lists are paged.
Durations use date_part (a float) rather than extract (a numeric, several times slower to sort).

A run belongs to the courses whose Classroom roster holds its student, by the student's
chat email or their linked Google account (as grading finds them); a student on two
rosters counts in both, and one on none under "no course".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.admin.models import AdminAction
from app.chat.models import InboundMessage
from app.courses.models import Course
from app.db import db, utcnow
from app.grading.service import GRADE_KINDS
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.runs.models import LessonRun, StepResult
from app.students.models import Student
from app.zulip.models import DeadLetter

PAGE_SIZE = 50
TOP_REASONS = 3
# Time-to-complete chart buckets, in minutes: under 15 min, 15–30 min, … 3 days and more.
COMPLETION_BUCKETS = (15, 30, 60, 120, 240, 480, 1440, 4320)

STUDENT_COURSES = """
student_courses AS (
    SELECT s.id AS student_id, cs.course_id FROM students s JOIN course_students cs ON cs.email = s.email
    UNION
    SELECT gl.student_id, cs.course_id FROM google_links gl
      JOIN course_students cs ON cs.email = gl.google_email OR cs.classroom_user_id = gl.google_user_id
)"""
# Since when an active run has been on its current step: its last passed step, or its start.
ON_STEP_SINCE = """CASE WHEN r.status = 'active' THEN
    coalesce((SELECT max(sr.passed_at) FROM step_results sr WHERE sr.run_id = r.id), r.started_at) END"""
# Grade reasons grouped without the student's address in them, so that one cause counts once.
REASON = r"regexp_replace(coalesce(o.last_error, ''), '[^\s@]+@[^\s@]+', '…', 'g')"


def stuck_before(stuck_after_hours: float) -> datetime:
    return utcnow() - timedelta(hours=stuck_after_hours)


# --- courses overview ----------------------------------------------------------------------------

@dataclass
class LessonRow:
    course: str | None
    lesson_id: str
    started: int = 0
    active: int = 0
    stuck: int = 0
    completed: int = 0
    stopped: int = 0
    median_seconds: float | None = None
    grades: dict[str, int] = field(default_factory=lambda: {"sent": 0, "pending": 0, "failed": 0})
    reasons: list[tuple[str, int]] = field(default_factory=list)


OVERVIEW_RUNS = sa.text(f"""
WITH {STUDENT_COURSES},
runs AS (SELECT r.student_id, r.lesson_id, r.status, r.started_at, r.finished_at,
                {ON_STEP_SINCE} < :stuck_before AS stuck FROM lesson_runs r)
SELECT c.alias AS course, runs.lesson_id,
       count(DISTINCT runs.student_id) AS started,
       count(DISTINCT runs.student_id) FILTER (WHERE runs.status = 'active') AS active,
       count(DISTINCT runs.student_id) FILTER (WHERE runs.stuck) AS stuck,
       count(DISTINCT runs.student_id) FILTER (WHERE runs.status = 'completed') AS completed,
       count(DISTINCT runs.student_id) FILTER (WHERE runs.status = 'stopped') AS stopped,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY date_part('epoch', runs.finished_at - runs.started_at))
           FILTER (WHERE runs.status = 'completed') AS median_seconds
FROM runs LEFT JOIN student_courses sc ON sc.student_id = runs.student_id LEFT JOIN courses c ON c.id = sc.course_id
GROUP BY c.alias, runs.lesson_id
""")

OVERVIEW_GRADES = sa.text(f"""
WITH {STUDENT_COURSES}
SELECT c.alias AS course, o.payload ->> 'lesson_id' AS lesson_id, o.status,
       CASE WHEN o.status = 'failed' THEN {REASON} ELSE '' END AS reason, count(*) AS items
FROM outbox o LEFT JOIN student_courses sc ON sc.student_id = o.student_id LEFT JOIN courses c ON c.id = sc.course_id
WHERE o.kind = 'grade'
GROUP BY 1, 2, 3, 4
""")


def courses_overview(stuck_after_hours: float) -> list[LessonRow]:
    """Per course and lesson: students in each state, the median time to complete, grades by status and reason."""
    rows: dict[tuple[str | None, str], LessonRow] = {}
    for row in db.session.execute(OVERVIEW_RUNS, {"stuck_before": stuck_before(stuck_after_hours)}):
        rows[(row.course, row.lesson_id)] = LessonRow(**row._mapping)
    for row in db.session.execute(OVERVIEW_GRADES):
        lesson = rows.setdefault((row.course, row.lesson_id), LessonRow(row.course, row.lesson_id))
        lesson.grades[row.status] = lesson.grades.get(row.status, 0) + row.items
        if row.reason:
            lesson.reasons.append((row.reason, row.items))
    for lesson in rows.values():
        lesson.reasons = sorted(lesson.reasons, key=lambda reason: -reason[1])[:TOP_REASONS]
    return sorted(rows.values(), key=lambda row: (row.course is None, row.course or "", row.lesson_id))


# --- lesson funnel --------------------------------------------------------------------------------

@dataclass
class StepRow:
    index: int
    step_id: str
    reached: int = 0
    passed: int = 0
    stuck: int = 0
    median_seconds: float | None = None
    hint_runs: int = 0
    not_yet: list[tuple[str, int]] = field(default_factory=list)
    wrong_answers: list[tuple[str, int]] = field(default_factory=list)


FUNNEL_POSITIONS = sa.text(f"""
SELECT step_index, count(*) AS runs, count(*) FILTER (WHERE on_step_since < :stuck_before) AS stuck
FROM (SELECT r.step_index, {ON_STEP_SINCE} AS on_step_since FROM lesson_runs r WHERE r.lesson_id = :lesson) runs
GROUP BY step_index
""")

FUNNEL_STEP_TIMES = sa.text("""
SELECT step_id, count(*) AS passed, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds
FROM (SELECT sr.step_id, date_part('epoch', sr.passed_at - coalesce(
          lag(sr.passed_at) OVER (PARTITION BY sr.run_id ORDER BY sr.passed_at, sr.id), r.started_at)) AS seconds
      FROM step_results sr JOIN lesson_runs r ON r.id = sr.run_id WHERE r.lesson_id = :lesson) times
GROUP BY step_id
""")

FUNNEL_EVENTS = sa.text("""
SELECT step_id, kind, detail, times, runs FROM (
    SELECT e.step_id, e.kind, e.detail, count(*) AS times, count(DISTINCT e.run_id) AS runs,
           row_number() OVER (PARTITION BY e.step_id, e.kind ORDER BY count(*) DESC, e.detail) AS rank
    FROM step_events e JOIN lesson_runs r ON r.id = e.run_id WHERE r.lesson_id = :lesson
    GROUP BY e.step_id, e.kind, e.detail) ranked
WHERE rank <= :top OR kind = 'hint'
""")

COMPLETION_TIMES = sa.text("""
SELECT width_bucket(date_part('epoch', finished_at - started_at) / 60, CAST(:bounds AS float8[])) AS bucket, count(*) AS runs
FROM lesson_runs WHERE lesson_id = :lesson AND status = 'completed' GROUP BY 1
""")


def lesson_funnel(lesson_id: str, step_ids: list[str], stuck_after_hours: float) -> list[StepRow]:
    """Per step of the lesson: reached, passed, stuck there, median time spent, hints, the common "not yet"s."""
    steps = [StepRow(index, step_id) for index, step_id in enumerate(step_ids)]
    by_id = {step.step_id: step for step in steps}
    params = {"lesson": lesson_id, "stuck_before": stuck_before(stuck_after_hours)}
    for row in db.session.execute(FUNNEL_POSITIONS, params):
        for step in steps[:row.step_index + 1]:  # a run on step k reached steps 1…k (a finished one: all)
            step.reached += row.runs
        if row.step_index < len(steps):
            steps[row.step_index].stuck += row.stuck
    for row in db.session.execute(FUNNEL_STEP_TIMES, params):
        if row.step_id in by_id:
            by_id[row.step_id].passed, by_id[row.step_id].median_seconds = row.passed, row.median_seconds
    for row in db.session.execute(FUNNEL_EVENTS, {**params, "top": TOP_REASONS}):
        noted = by_id.get(row.step_id)  # events of a step since removed from the lesson are left out
        if noted is None:
            continue
        if row.kind == "hint":
            noted.hint_runs += row.runs
        else:
            (noted.wrong_answers if row.kind == "wrong_answer" else noted.not_yet).append((row.detail, row.times))
    return steps


def completion_times(lesson_id: str) -> list[int]:
    """Completed runs per time-to-complete bucket (COMPLETION_BUCKETS, plus one for longer)."""
    counts = [0] * (len(COMPLETION_BUCKETS) + 1)
    for row in db.session.execute(COMPLETION_TIMES, {"lesson": lesson_id, "bounds": list(COMPLETION_BUCKETS)}):
        counts[max(0, min(int(row.bucket), len(COMPLETION_BUCKETS)))] += row.runs
    return counts


# --- students ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    rows: list[Any]
    total: int
    number: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


STUDENT_SEARCH = sa.text(r"""
WITH found AS (
    SELECT s.id, s.email, s.full_name, count(*) OVER () AS total FROM students s
    WHERE :pattern = '' OR s.email ILIKE :pattern ESCAPE '\' OR s.full_name ILIKE :pattern ESCAPE '\'
    ORDER BY s.email, s.id LIMIT :limit OFFSET :offset)
SELECT found.*, (SELECT count(*) FROM lesson_runs r WHERE r.student_id = found.id) AS runs,
       active.lesson_id AS active_lesson, active.step_index AS active_step
FROM found LEFT JOIN lesson_runs active ON active.student_id = found.id AND active.status = 'active'
ORDER BY found.email, found.id
""")


STUDENT_COUNT = sa.text(r"""
SELECT count(*) FROM students s
WHERE :pattern = '' OR s.email ILIKE :pattern ESCAPE '\' OR s.full_name ILIKE :pattern ESCAPE '\'
""")


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching the text anywhere, its own % _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if text else ""


def search_students(text: str, page: int) -> Page:
    """Students whose email or name contains the text (any case), a page at a time, by email."""
    rows = list(db.session.execute(STUDENT_SEARCH, {"pattern": like_pattern(text), "limit": PAGE_SIZE,
                                                    "offset": (page - 1) * PAGE_SIZE}))
    total = rows[0].total if rows else 0
    if not rows and page > 1:  # past the last page: still say how many there are
        total = int(db.session.scalar(STUDENT_COUNT, {"pattern": like_pattern(text)}) or 0)
    return Page(rows, total, page)


@dataclass
class StudentView:
    student: Student
    runs: list[LessonRun]
    results: dict[int, list[StepResult]]
    conversation: list[tuple[datetime, str, str, OutboxItem | None]]
    grades: list[OutboxItem]
    actions: list[AdminAction]
    courses: list[str]


CONVERSATION_LIMIT = 200


def student_view(student_id: int) -> StudentView | None:
    """One student's runs with each step's result, their conversation with the bot, grades and admin actions."""
    student = db.session.get(Student, student_id)
    if student is None:
        return None
    runs = list(db.session.scalars(sa.select(LessonRun).where(LessonRun.student_id == student_id)
                                   .order_by(LessonRun.id.desc())))
    results: dict[int, list[StepResult]] = defaultdict(list)
    for result in db.session.scalars(sa.select(StepResult).join(LessonRun).where(LessonRun.student_id == student_id)
                                     .order_by(StepResult.passed_at, StepResult.id)):
        results[result.run_id].append(result)
    return StudentView(student, runs, results, _conversation(student_id), _student_grades(student_id),
                       _student_actions(student_id), _student_courses(student_id))


def _conversation(student_id: int) -> list[tuple[datetime, str, str, OutboxItem | None]]:
    """The newest messages both ways, oldest first: (when, "in" or "out", text, the reply's outbox item)."""
    inbound = db.session.execute(sa.select(InboundMessage.received_at, InboundMessage.content)
                                 .where(InboundMessage.student_id == student_id)
                                 .order_by(InboundMessage.id.desc()).limit(CONVERSATION_LIMIT))
    replies = db.session.scalars(sa.select(OutboxItem).where(OutboxItem.student_id == student_id,
                                                             OutboxItem.kind == OutboxKind.CHAT_REPLY)
                                 .order_by(OutboxItem.id.desc()).limit(CONVERSATION_LIMIT))
    messages: list[tuple[datetime, str, str, OutboxItem | None]] = [(at, "in", text, None) for at, text in inbound]
    messages += [(item.created_at, "out", str(item.payload.get("content", "")), item) for item in replies]
    return sorted(messages, key=lambda message: (message[0], message[1] == "out"))[-CONVERSATION_LIMIT:]


def _student_grades(student_id: int) -> list[OutboxItem]:
    return list(db.session.scalars(sa.select(OutboxItem).where(OutboxItem.student_id == student_id,
                                                               OutboxItem.kind.in_(GRADE_KINDS))
                                   .order_by(OutboxItem.id.desc())))


def _student_actions(student_id: int) -> list[AdminAction]:
    return list(db.session.scalars(sa.select(AdminAction).where(AdminAction.student_id == student_id)
                                   .order_by(AdminAction.id.desc()).limit(100)))


STUDENT_COURSE_ALIASES = sa.text(f"""
WITH {STUDENT_COURSES}
SELECT c.alias FROM student_courses sc JOIN courses c ON c.id = sc.course_id WHERE sc.student_id = :student ORDER BY 1
""")


def _student_courses(student_id: int) -> list[str]:
    return list(db.session.scalars(STUDENT_COURSE_ALIASES, {"student": student_id}))


# --- grades ---------------------------------------------------------------------------------------------

# The page's rows are picked first; their students' course aliases are looked up for those rows only.
GRADE_LIST = f"""
WITH {STUDENT_COURSES},
picked AS (
    SELECT o.id, o.kind, o.status, o.attempts, o.last_error, o.created_at, o.sent_at, o.student_id,
           o.payload ->> 'lesson_id' AS lesson_id, o.payload ->> 'points' AS points, count(*) OVER () AS total
    FROM outbox o
    WHERE o.kind IN ('grade', 'sheet_row')
      AND (:status = '' OR o.status = :status)
      AND (:course = '' OR o.student_id IN (SELECT sc.student_id FROM student_courses sc
                                            JOIN courses c ON c.id = sc.course_id WHERE c.alias = :course))
    ORDER BY o.id DESC
    {{limit}})
SELECT picked.*, s.email, s.full_name,
       coalesce((SELECT string_agg(c.alias, ', ' ORDER BY c.alias) FROM courses c WHERE c.id IN (
                     SELECT cs.course_id FROM course_students cs WHERE cs.email = s.email
                     UNION SELECT cs.course_id FROM course_students cs WHERE cs.email = gl.google_email
                     UNION SELECT cs.course_id FROM course_students cs WHERE cs.classroom_user_id = gl.google_user_id)),
                '') AS courses
FROM picked LEFT JOIN students s ON s.id = picked.student_id LEFT JOIN google_links gl ON gl.student_id = picked.student_id
ORDER BY picked.id DESC
"""
GRADE_PAGE = sa.text(GRADE_LIST.format(limit="LIMIT :limit OFFSET :offset"))
GRADE_ALL = sa.text(GRADE_LIST.format(limit=""))


def list_grade_rows(status: str, course: str, page: int, size: int = PAGE_SIZE) -> Page:
    """Grades and gradebook rows with their student, courses, points, status, reason and attempts; newest first."""
    rows = list(db.session.execute(GRADE_PAGE, {"status": status, "course": course, "limit": size,
                                                "offset": (page - 1) * size}))
    return Page(rows, rows[0].total if rows else 0, page, size)


def iter_grade_rows(status: str, course: str) -> Iterator[Any]:
    """Every grade row under the filter, streamed (the CSV export)."""
    result = db.session.execute(GRADE_ALL.execution_options(yield_per=1000), {"status": status, "course": course})
    yield from result


def course_aliases() -> list[str]:
    return list(db.session.scalars(sa.select(Course.alias).order_by(Course.alias)))


# --- problems ---------------------------------------------------------------------------------------------

PROBLEM_LIMIT = 100


def failed_outbox() -> tuple[list[OutboxItem], int]:
    """The newest failed outbox items of every kind, and how many there are."""
    failed = OutboxItem.status == OutboxStatus.FAILED
    items = list(db.session.scalars(sa.select(OutboxItem).where(failed).order_by(OutboxItem.id.desc()).limit(PROBLEM_LIMIT)))
    total = len(items) if len(items) < PROBLEM_LIMIT else int(
        db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem).where(failed)) or 0)
    return items, total


def dead_letters() -> tuple[list[DeadLetter], int]:
    letters = list(db.session.scalars(sa.select(DeadLetter).order_by(DeadLetter.id.desc()).limit(PROBLEM_LIMIT)))
    total = len(letters) if len(letters) < PROBLEM_LIMIT else int(
        db.session.scalar(sa.select(sa.func.count()).select_from(DeadLetter)) or 0)
    return letters, total
