"""Every model, imported in one place so that migrations see them all."""

from app.chat.models import InboundMessage
from app.courses.models import Course
from app.outbox.models import OutboxItem
from app.runs.models import LessonRun, StepResult
from app.students.models import Student
from app.workers.models import WorkerStatus
from app.zulip.models import RateBudget, ReceiverState

__all__ = ["Course", "InboundMessage", "LessonRun", "OutboxItem", "RateBudget", "ReceiverState", "StepResult", "Student", "WorkerStatus"]
