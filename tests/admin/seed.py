"""A seeded course for the admin pages: students with git-basics runs in every state, in bulk.

``seed_course(db, students)`` adds a course whose roster holds most of the students (every
25th is on no roster), and for each student, by their number k:

=========  ===============================================================================
k % 10     what they did
=========  ===============================================================================
0, 1, 2    completed git-basics; grade sent (0), waiting (1) or failed (2, two reasons)
3          stopped on step 3; one reply to them failed
4, 5, 6    active on step k % 7 + 1, moving (on it for under an hour)
7, 8       active and stuck: on step 2 (7) or 5 (8) for three days
9          never started
=========  ===============================================================================

plus hints, "not yet"s and wrong quiz answers on the first steps, three messages each way
per student who started, and three dead letters. What the pages should show is computed
here from the same rules (``Seeded``), independently of the pages' SQL. Rows go in with
multi-row INSERTs, so 10 000 students take seconds.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from app.admin.models import AdminAction  # noqa: F401  (the tables below are all registered)
from app.chat.models import InboundMessage
from app.courses.models import Course, CourseStudent
from app.db import utcnow
from app.outbox.models import OutboxItem
from app.runs.models import LessonRun, StepEvent, StepResult
from app.students.models import Student
from app.zulip.models import DeadLetter

LESSON = "git-basics"
STEPS = ("first-commit", "quiz-log", "feature-branch", "feature-file", "merge", "tag", "quiz-status")
STEP_POINTS = (20, 10, 15, 15, 15, 15, 10)
NO_ASSIGNMENT = "course {alias} has no assignment for lesson git-basics; fix: ./manage.py assignments create"
NOT_ENROLLED = "{email} is not a student of course {alias} in Classroom (no submission)"
REPLY_FAILED = "Zulip refused the message: the user is deactivated"
NOT_YET = "Branch main has no commits yet."


@dataclass
class Seeded:
    """What was seeded, and what the admin pages should count from it."""

    alias: str
    students: int
    student_ids: list[int] = field(default_factory=list)
    by_state: Counter[str] = field(default_factory=Counter)          # students per state, course and no course together
    on_roster: Counter[str] = field(default_factory=Counter)         # students per state, on the course's roster
    grades: Counter[str] = field(default_factory=Counter)            # grade items per status, all students
    grades_on_roster: Counter[str] = field(default_factory=Counter)
    reached: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    passed: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    stuck: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    hint_runs: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    wrong_answers: Counter[str] = field(default_factory=Counter)
    not_yet: int = 0
    failed_replies: list[int] = field(default_factory=list)
    dead_letters: int = 3
    run_of_state: dict[str, int] = field(default_factory=dict)       # one run id per state
    student_of_state: dict[str, int] = field(default_factory=dict)


def state_of(k: int) -> str:
    return {0: "completed", 1: "completed", 2: "completed", 3: "stopped", 4: "active", 5: "active", 6: "active",
            7: "stuck", 8: "stuck", 9: "none"}[k % 10]


def grade_status(k: int) -> str:
    return {0: "sent", 1: "pending", 2: "failed"}[k % 10]


def step_index_of(k: int) -> int:
    state = state_of(k)
    if state == "completed":
        return len(STEPS)
    if state == "stopped":
        return 2
    if state == "stuck":
        return 1 if k % 10 == 7 else 4
    return k % 7


def on_roster(k: int) -> bool:
    return k % 25 != 0


def _next_id(db: SQLAlchemy, table: str) -> int:
    return int(db.session.scalar(sa.text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")) or 1)


def _csv_field(value: Any) -> str:
    if value is None:
        return ""  # unquoted: NULL
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, dict):
        value = json.dumps(value)
    elif isinstance(value, bool):
        value = "t" if value else "f"
    return '"' + str(value).replace('"', '""') + '"'


def _insert(db: SQLAlchemy, model: Any, rows: list[dict[str, Any]]) -> None:
    """COPY the rows in (tens of thousands a second, where INSERTs through the ORM take minutes)."""
    if not rows:
        return
    columns = list(rows[0])
    data = io.StringIO("".join(",".join(_csv_field(row[name]) for name in columns) + "\n" for row in rows))
    cursor = db.session.connection().connection.cursor()
    cursor.copy_expert(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", data)


class _Builder:
    """Collects the rows of one seeding and the counts the pages should show."""

    def __init__(self, db: SQLAlchemy, alias: str, students: int, now: datetime) -> None:
        self.now = now
        self.alias = alias
        self.seeded = Seeded(alias, students)
        self.student_base, self.run_base = _next_id(db, "students"), _next_id(db, "lesson_runs")
        self.outbox_base, self.inbound_base = _next_id(db, "outbox"), _next_id(db, "inbound_messages")
        self.rows: dict[Any, list[dict[str, Any]]] = {model: [] for model in
                                                      (Student, CourseStudent, LessonRun, StepResult, StepEvent,
                                                       InboundMessage, OutboxItem)}

    def student(self, k: int, course_id: int) -> None:
        student_id = self.student_base + k - 1
        email = f"{self.alias}.student{k}@school.example"
        self.seeded.student_ids.append(student_id)
        name = f"Студент {k}" if k % 2 else f"Student {k}"
        self.rows[Student].append({"id": student_id, "email": email, "full_name": name, "language": "ru" if k % 2 else "en",
                                   "created_at": self.now - timedelta(days=10)})
        if on_roster(k):
            self.rows[CourseStudent].append({"course_id": course_id, "classroom_user_id": f"{self.alias}-u{k}",
                                             "email": email, "full_name": name, "synced_at": self.now})
        state = state_of(k)
        self.seeded.by_state[state] += 1
        if on_roster(k):
            self.seeded.on_roster[state] += 1
        self.seeded.student_of_state.setdefault(state, student_id)
        if state != "none":
            self.run(k, student_id, email, state)

    def run(self, k: int, student_id: int, email: str, state: str) -> None:
        run_id = self.run_base + len(self.rows[LessonRun])
        self.seeded.run_of_state.setdefault(state, run_id)
        steps = step_index_of(k)
        started, step_time = self._timing(k, state)
        passed = [started + step_time * (i + 1) for i in range(min(steps, len(STEPS)))]
        finished = passed[-1] if state in ("completed", "stopped") and passed else None
        self.rows[LessonRun].append({
            "id": run_id, "student_id": student_id, "lesson_id": LESSON, "status": "active" if state == "stuck" else state,
            "step_index": steps, "points": sum(STEP_POINTS[:steps]), "context": {}, "started_at": started,
            "finished_at": finished, "last_activity_at": finished or self.now, "check_failures": 0})
        for index, at in enumerate(passed):
            self.rows[StepResult].append({"run_id": run_id, "step_id": STEPS[index], "points": STEP_POINTS[index],
                                          "attempts": 1, "passed_at": at, "source": "chat"})
        self._count_funnel(k, steps, state)
        self._events(k, run_id, steps, started)
        self._conversation(k, student_id, email, started)
        if state == "completed":
            self._grade(k, run_id, student_id, email)

    def _timing(self, k: int, state: str) -> tuple[datetime, timedelta]:
        if state == "stuck":
            return self.now - timedelta(days=5), timedelta(hours=12)  # last step passed over three days ago
        if state == "active":
            return self.now - timedelta(minutes=50), timedelta(minutes=5)
        return self.now - timedelta(days=2, hours=k % 5), timedelta(minutes=5 + k % 30)

    def _count_funnel(self, k: int, steps: int, state: str) -> None:
        for index in range(min(steps + 1, len(STEPS))):
            self.seeded.reached[index] += 1
        for index in range(min(steps, len(STEPS))):
            self.seeded.passed[index] += 1
        if state == "stuck":
            self.seeded.stuck[steps] += 1

    def _events(self, k: int, run_id: int, steps: int, started: datetime) -> None:
        at = started + timedelta(minutes=1)
        if k % 4 == 0:
            self.rows[StepEvent].append({"run_id": run_id, "step_id": STEPS[0], "kind": "hint", "detail": "", "at": at})
            self.rows[StepEvent].append({"run_id": run_id, "step_id": STEPS[0], "kind": "hint", "detail": "", "at": at})
            self.seeded.hint_runs[0] += 1
        if k % 5 == 0:
            self.rows[StepEvent].append({"run_id": run_id, "step_id": STEPS[0], "kind": "not_yet", "detail": NOT_YET, "at": at})
            self.seeded.not_yet += 1
        if steps >= 1 and k % 3 == 0:
            answer = "git commit" if k % 2 else "git history"
            self.rows[StepEvent].append({"run_id": run_id, "step_id": STEPS[1], "kind": "wrong_answer", "detail": answer,
                                         "at": at})
            self.seeded.wrong_answers[answer] += 1

    def _conversation(self, k: int, student_id: int, email: str, started: datetime) -> None:
        for m, text in enumerate(("start git-basics", "check", "hint")):
            self.rows[InboundMessage].append({"id": self.inbound_base + len(self.rows[InboundMessage]),
                                              "message_id": f"seed:{self.alias}:{k}:{m}", "student_id": student_id,
                                              "content": text, "received_at": started + timedelta(seconds=m * 60)})
            failed = state_of(k) == "stopped" and m == 2
            item_id = self._outbox(student_id, "chat_reply", {"to": email, "content": f"Reply {m + 1} to {text}"},
                                   "failed" if failed else "sent", started + timedelta(seconds=m * 60 + 1),
                                   REPLY_FAILED if failed else None)
            if failed:
                self.seeded.failed_replies.append(item_id)

    def _grade(self, k: int, run_id: int, student_id: int, email: str) -> None:
        status = grade_status(k)
        reason = None
        if status == "failed":
            reason = (NO_ASSIGNMENT if k % 20 == 2 else NOT_ENROLLED).format(alias=self.alias, email=email)
        payload = {"run_id": run_id, "lesson_id": LESSON, "points": sum(STEP_POINTS), "student_email": email}
        self._outbox(student_id, "grade", payload, status, self.now - timedelta(days=1), reason, f"grade:run:{run_id}")
        self.seeded.grades[status] += 1
        if on_roster(k):
            self.seeded.grades_on_roster[status] += 1

    def _outbox(self, student_id: int, kind: str, payload: dict[str, Any], status: str, at: datetime,
                error: str | None, key: str | None = None) -> int:
        item_id = self.outbox_base + len(self.rows[OutboxItem])
        self.rows[OutboxItem].append({
            "id": item_id, "kind": kind, "student_id": student_id, "payload": payload, "status": status, "dedupe_key": key,
            "attempts": 3 if status == "failed" else (0 if status == "pending" else 1), "next_attempt_at": at,
            "last_error": error, "created_at": at, "sent_at": at if status == "sent" else None, "ambiguous": False})
        return item_id


def seed_course(db: SQLAlchemy, students: int, alias: str = "seed") -> Seeded:
    """Seed a course with `students` students (see the module's table); commits and returns what to expect."""
    now = utcnow()
    course = Course(alias=alias, classroom_name=f"Course {alias}", classroom_id=f"{alias}-classroom", created_at=now)
    db.session.add(course)
    db.session.flush()
    builder = _Builder(db, alias, students, now)
    for k in range(1, students + 1):
        builder.student(k, course.id)
    for model, rows in builder.rows.items():
        _insert(db, model, rows)
    db.session.add_all(DeadLetter(message_id=_next_dead_letter(db) + n, sender=f"{alias}.stranger{n}@school.example",
                                  content=f"message {n} the core choked on", reason="ValueError: bad content",
                                  attempts=5, created_at=now) for n in range(3))
    for table in ("students", "lesson_runs", "outbox", "inbound_messages"):
        db.session.execute(sa.text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    db.session.commit()
    return builder.seeded


def _next_dead_letter(db: SQLAlchemy) -> int:
    return int(db.session.scalar(sa.text("SELECT coalesce(max(message_id), 0) + 1 FROM dead_letters")) or 1)
