"""Classroom v1: courses, students, courseWork and studentSubmissions.

The rule that matters for Lessonbot: a project may modify (grade, return) only
the courseWork created by one of its own OAuth clients. Such courseWork shows
``associatedWithDeveloper: true`` to that project; anything else answers 403
``@ProjectPermissionDenied``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .common import Call, Identity, Ids, now_string, paginate
from .errors import invalid_argument, not_found, project_permission_denied
from .faults import Clock
from .oauth import OAuthState

API = "classroom"
GRADE_FIELDS = ("assignedGrade", "draftGrade")
COURSEWORK_MUTABLE = (
    "title",
    "description",
    "state",
    "dueDate",
    "dueTime",
    "maxPoints",
    "scheduledTime",
    "submissionModificationMode",
    "topicId",
    "gradeCategory",
    "materials",
)


@dataclass
class CourseWorkRecord:
    """A courseWork resource plus the project whose client created it."""

    resource: dict[str, Any]
    project_id: str
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    grade_history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CourseRecord:
    """A course with its roster and courseWork."""

    resource: dict[str, Any]
    students: dict[str, dict[str, Any]] = field(default_factory=dict)
    coursework: dict[str, CourseWorkRecord] = field(default_factory=dict)


class Classroom:
    """In-memory Classroom. Callers hold the server lock."""

    def __init__(self, oauth: OAuthState, clock: Clock, ids: Ids) -> None:
        self.oauth, self.clock, self.ids = oauth, clock, ids
        self.courses: dict[str, CourseRecord] = {}
        self.default_page_size = 30

    def handlers(self) -> dict[str, Callable[[Call], Any]]:
        """Method id → implementation."""
        prefix = "classroom.courses."
        return {
            prefix + "list": self.list_courses,
            prefix + "get": self.get_course,
            prefix + "students.list": self.list_students,
            prefix + "courseWork.create": self.create_coursework,
            prefix + "courseWork.list": self.list_coursework,
            prefix + "courseWork.get": self.get_coursework,
            prefix + "courseWork.patch": self.patch_coursework,
            prefix + "courseWork.delete": self.delete_coursework,
            prefix + "courseWork.studentSubmissions.list": self.list_submissions,
            prefix + "courseWork.studentSubmissions.get": self.get_submission,
            prefix + "courseWork.studentSubmissions.patch": self.patch_submission,
            prefix + "courseWork.studentSubmissions.return": self.return_submission,
        }

    # --- control API -------------------------------------------------------------------

    def add_course(self, name: str, section: str | None = None, state: str = "ACTIVE", owner_id: str = "me") -> str:
        """Create a course; returns its id."""
        course_id = self.ids.numeric()
        now = now_string(self.clock)
        resource = {
            "id": course_id,
            "name": name,
            "ownerId": owner_id,
            "courseState": state,
            "creationTime": now,
            "updateTime": now,
            "enrollmentCode": course_id[-6:],
            "alternateLink": f"https://classroom.google.com/c/{course_id}",
            "guardiansEnabled": False,
        }
        if section:
            resource["section"] = section
        self.courses[course_id] = CourseRecord(resource)
        return course_id

    def add_student(self, course_id: str, email: str, name: str | None = None) -> str:
        """Enroll ``email`` (an account is created if needed); returns the userId."""
        course = self._course(course_id)
        account = self.oauth.add_account(email, name)
        given, _, family = account.name.partition(" ")
        course.students[account.user_id] = {
            "courseId": course_id,
            "userId": account.user_id,
            "profile": {
                "id": account.user_id,
                "name": {"givenName": given, "familyName": family, "fullName": account.name},
                "emailAddress": account.email,
            },
        }
        for work in course.coursework.values():
            if work.resource["state"] == "PUBLISHED":
                self._ensure_submission(course_id, work, account.user_id)
        return account.user_id

    def add_coursework(self, course_id: str, project_id: str, fields: dict[str, Any]) -> str:
        """Create courseWork as if a client of ``project_id`` had; returns its id."""
        course = self._course(course_id)
        work_id = self.ids.numeric(800_000_000_000)
        now = now_string(self.clock)
        resource = {
            "courseId": course_id,
            "id": work_id,
            "state": "DRAFT",
            "creationTime": now,
            "updateTime": now,
            "creatorUserId": "me",
            "alternateLink": f"https://classroom.google.com/c/{course_id}/a/{work_id}/details",
            "assigneeMode": "ALL_STUDENTS",
            "submissionModificationMode": "MODIFIABLE_UNTIL_TURNED_IN",
        }
        resource.update(copy.deepcopy(fields))
        record = CourseWorkRecord(resource, project_id)
        course.coursework[work_id] = record
        self._publish_if_needed(course_id, record)
        return work_id

    def coursework_record(self, course_id: str, work_id: str) -> CourseWorkRecord:
        """The stored courseWork (404 ApiError when missing)."""
        work = self._course(course_id).coursework.get(work_id)
        if work is None:
            raise not_found(API)
        return work

    # --- helpers -----------------------------------------------------------------------

    def _course(self, course_id: str) -> CourseRecord:
        course = self.courses.get(course_id)
        if course is None:
            raise not_found(API)
        return course

    def _publish_if_needed(self, course_id: str, work: CourseWorkRecord) -> None:
        if work.resource["state"] == "PUBLISHED":
            for user_id in self._course(course_id).students:
                self._ensure_submission(course_id, work, user_id)

    def _ensure_submission(self, course_id: str, work: CourseWorkRecord, user_id: str) -> None:
        if any(s["userId"] == user_id for s in work.submissions.values()):
            return
        submission_id = self.ids.opaque("submission")
        now = now_string(self.clock)
        work.submissions[submission_id] = {
            "courseId": course_id,
            "courseWorkId": work.resource["id"],
            "id": submission_id,
            "userId": user_id,
            "creationTime": now,
            "updateTime": now,
            "state": "CREATED",
            "courseWorkType": work.resource.get("workType", "ASSIGNMENT"),
            "alternateLink": f"{work.resource['alternateLink']}?submission={submission_id}",
        }

    def _resolve_user(self, identity: Identity, user: str) -> str | None:
        if user == "me":
            return identity.user_id
        account = self.oauth.account(user)
        return account.user_id if account else None

    @staticmethod
    def _view(resource: dict[str, Any], work: CourseWorkRecord, identity: Identity) -> dict[str, Any]:
        view = copy.deepcopy(resource)
        view["associatedWithDeveloper"] = work.project_id == identity.project_id
        return view

    def _page(self, call: Call, items: list[Any], key: str) -> dict[str, Any]:
        page, token = paginate(API, items, call.query.get("pageSize"), call.query.get("pageToken"), self.default_page_size, 1000)
        body: dict[str, Any] = {key: page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    # --- courses and roster ------------------------------------------------------------

    def list_courses(self, call: Call) -> dict[str, Any]:
        """classroom.courses.list"""
        states = call.query.get("courseStates")
        student = call.query.get("studentId")
        student_id = self._resolve_user(call.identity, student) if student else None
        courses = [
            copy.deepcopy(c.resource)
            for c in self.courses.values()
            if (not states or c.resource["courseState"] in states) and (student is None or student_id in c.students)
        ]
        return self._page(call, courses, "courses")

    def get_course(self, call: Call) -> dict[str, Any]:
        """classroom.courses.get"""
        return copy.deepcopy(self._course(call.path["id"]).resource)

    def list_students(self, call: Call) -> dict[str, Any]:
        """classroom.courses.students.list"""
        students = [copy.deepcopy(s) for s in self._course(call.path["courseId"]).students.values()]
        return self._page(call, students, "students")

    # --- courseWork --------------------------------------------------------------------

    def create_coursework(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.create"""
        body = call.body or {}
        if not body.get("title"):
            raise invalid_argument(API, "title: Title is required.")
        if body.get("workType") in (None, "COURSE_WORK_TYPE_UNSPECIFIED"):
            raise invalid_argument(API, "workType: Work type must be specified.")
        readonly = {"id", "courseId", "creationTime", "updateTime", "creatorUserId", "alternateLink", "associatedWithDeveloper"}
        fields = {k: v for k, v in body.items() if k not in readonly}
        work_id = self.add_coursework(call.path["courseId"], call.identity.project_id, fields)
        work = self.coursework_record(call.path["courseId"], work_id)
        work.resource["creatorUserId"] = call.identity.user_id
        return self._view(work.resource, work, call.identity)

    def list_coursework(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.list (default: PUBLISHED only, newest first)."""
        states = call.query.get("courseWorkStates") or ["PUBLISHED"]
        works = [w for w in self._course(call.path["courseId"]).coursework.values() if w.resource["state"] in states]
        works.reverse()
        views = [self._view(w.resource, w, call.identity) for w in works]
        return self._page(call, views, "courseWork")

    def get_coursework(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.get"""
        work = self.coursework_record(call.path["courseId"], call.path["id"])
        return self._view(work.resource, work, call.identity)

    def patch_coursework(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.patch (only the creating project may)."""
        work = self.coursework_record(call.path["courseId"], call.path["id"])
        if work.project_id != call.identity.project_id:
            raise project_permission_denied()
        mask = _mask(call, COURSEWORK_MUTABLE)
        if "state" in mask and work.resource["state"] == "PUBLISHED" and (call.body or {}).get("state") == "DRAFT":
            raise invalid_argument(API, "Published course work cannot be changed back to draft.")
        _apply_mask(work.resource, call.body or {}, mask, now_string(self.clock))
        self._publish_if_needed(call.path["courseId"], work)
        return self._view(work.resource, work, call.identity)

    def delete_coursework(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.delete (only the creating project may)."""
        work = self.coursework_record(call.path["courseId"], call.path["id"])
        if work.project_id != call.identity.project_id:
            raise project_permission_denied()
        del self._course(call.path["courseId"]).coursework[call.path["id"]]
        return {}

    # --- studentSubmissions ------------------------------------------------------------

    def _works_for(self, course_id: str, work_id: str) -> list[CourseWorkRecord]:
        if work_id == "-":
            return list(self._course(course_id).coursework.values())
        return [self.coursework_record(course_id, work_id)]

    def list_submissions(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.studentSubmissions.list (userId: email, id or "me")."""
        user = call.query.get("userId")
        user_id = self._resolve_user(call.identity, user) if user else None
        if user and user_id is None:
            raise invalid_argument(API, f"userId: {user} is not a valid user.")
        states = call.query.get("states")
        views = [
            self._view(s, work, call.identity)
            for work in self._works_for(call.path["courseId"], call.path["courseWorkId"])
            for s in work.submissions.values()
            if (user_id is None or s["userId"] == user_id) and (not states or s["state"] in states)
        ]
        return self._page(call, views, "studentSubmissions")

    def _submission(self, call: Call) -> tuple[CourseWorkRecord, dict[str, Any]]:
        work = self.coursework_record(call.path["courseId"], call.path["courseWorkId"])
        submission = work.submissions.get(call.path["id"])
        if submission is None:
            raise not_found(API)
        return work, submission

    def get_submission(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.studentSubmissions.get"""
        work, submission = self._submission(call)
        return self._view(submission, work, call.identity)

    def patch_submission(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.studentSubmissions.patch (draftGrade, assignedGrade)."""
        work, submission = self._submission(call)
        if work.project_id != call.identity.project_id:
            raise project_permission_denied()
        mask = _mask(call, GRADE_FIELDS)
        for name in mask:
            grade = (call.body or {}).get(name)
            if grade is not None and grade < 0:
                raise invalid_argument(API, f"{name}: Grade must be non-negative.")
        _apply_mask(submission, call.body or {}, mask, now_string(self.clock))
        work.grade_history.append({"submissionId": submission["id"], **{k: submission.get(k) for k in mask}})
        return self._view(submission, work, call.identity)

    def return_submission(self, call: Call) -> dict[str, Any]:
        """classroom.courses.courseWork.studentSubmissions.return: state → RETURNED."""
        work, submission = self._submission(call)
        if work.project_id != call.identity.project_id:
            raise project_permission_denied()
        submission["state"] = "RETURNED"
        submission["updateTime"] = now_string(self.clock)
        return {}


def _mask(call: Call, allowed: tuple[str, ...]) -> list[str]:
    raw = call.query.get("updateMask")
    if not raw:
        raise invalid_argument(API, "updateMask: Update mask is required.")
    fields = [name.strip() for name in raw.split(",") if name.strip()]
    unsupported = [name for name in fields if name not in allowed]
    if unsupported:
        raise invalid_argument(API, f"Non-supported update mask fields specified: {', '.join(unsupported)}")
    return fields


def _apply_mask(resource: dict[str, Any], body: dict[str, Any], mask: list[str], now: str) -> None:
    for name in mask:
        if name in body and body[name] is not None:
            resource[name] = copy.deepcopy(body[name])
        else:
            resource.pop(name, None)
    resource["updateTime"] = now
