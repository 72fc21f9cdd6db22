"""Every model, imported in one place so that migrations see them all."""

from app.chat.models import InboundMessage
from app.courses.models import Assignment, Course, CourseStudent
from app.git.models import HookSignature
from app.google.models import Admin, GoogleAuthorization, GoogleLink, OAuthRequest
from app.outbox.models import OutboxItem
from app.runs.models import LessonRun, StepResult
from app.students.models import Student
from app.workers.models import WorkerStatus
from app.zulip.models import RateBudget, ReceiverState

__all__ = [
           "Admin",
           "Assignment",
           "Course",
           "CourseStudent",
           "GoogleAuthorization",
           "GoogleLink",
           "HookSignature",
           "InboundMessage",
           "LessonRun",
           "OAuthRequest",
           "OutboxItem",
           "RateBudget",
           "ReceiverState",
           "StepResult",
           "Student",
           "WorkerStatus",
]
