"""Every model, imported in one place so that migrations see them all."""

from app.admin.models import AdminAction
from app.chat.models import InboundMessage
from app.courses.models import Assignment, Course, CourseStudent
from app.git.models import HookSignature
from app.github.models import GitHubDelivery
from app.google.models import Admin, GoogleAuthorization, GoogleLink, OAuthRequest
from app.outbox.models import OutboxItem
from app.runs.models import LessonRun, StepEvent, StepResult
from app.students.models import Student
from app.workers.models import WorkerStatus
from app.zulip.models import DeadLetter, RateBudget, ReceiverState

__all__ = [
           "Admin",
           "AdminAction",
           "Assignment",
           "Course",
           "CourseStudent",
           "DeadLetter",
           "GitHubDelivery",
           "GoogleAuthorization",
           "GoogleLink",
           "HookSignature",
           "InboundMessage",
           "LessonRun",
           "OAuthRequest",
           "OutboxItem",
           "RateBudget",
           "ReceiverState",
           "StepEvent",
           "StepResult",
           "Student",
           "WorkerStatus",
]
