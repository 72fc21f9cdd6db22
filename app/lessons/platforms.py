"""Per-platform preparation of a run (e.g. the Git platform creates a repository)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from app.i18n import Text
from app.lessons.schema import Lesson


@dataclass(frozen=True)
class Prepared:
    """Platform data kept with the run, and what to tell the student about it."""

    context: dict[str, Any] = field(default_factory=dict)
    texts: list[Text] = field(default_factory=list)


class NotReady(Exception):
    """The platform cannot set up a run for this student yet; ``text`` tells them what to do first."""

    def __init__(self, text: Text) -> None:
        super().__init__(text.key)
        self.text = text


class Workspace(Protocol):
    """The one I/O interface of the chat dialog: set up a run's platform side, make link URLs."""

    def prepare(self, lesson: Lesson, student_email: str) -> Prepared:
        """Set up the run's platform side, in the caller's transaction: what it queues in the outbox (a GitHub
        repository's setup) commits with the new run, or not at all."""
        ...

    def recall(self, lesson: Lesson, context: dict[str, Any]) -> list[Text]:
        """What `prepare` told the student, again, for one who comes back (their clone may be gone)."""
        ...

    def link_url(self, student_email: str) -> str | None:
        """A one-time URL that links the student's Google account; None when Google is not set up."""
        ...

    def link_github(self, student_email: str, login: str) -> list[Text]:
        """Record the GitHub login the student claims (confirmed later on GitHub); what to tell them."""
        ...
