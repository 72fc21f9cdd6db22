"""One turn of a lesson conversation: the student's chat state in, an :class:`Outcome` out.

Below both the dialog (app/chat/dialog.py, which answers the student's commands) and the
runs service (app/runs/service.py, which persists an outcome): neither imports the other
for these. The turns an admin forces (stop, restart) are here too, worded as if the
student had asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from app.i18n import Text
from app.lessons.engine import PassedStep, RunState, step_text
from app.lessons.platforms import NotReady, Workspace
from app.lessons.schema import Lesson


@dataclass(frozen=True)
class ChatState:
    language: str
    run: RunState | None = None
    last_lesson_id: str | None = None
    student_email: str = ""


@dataclass(frozen=True)
class RunEnded:
    status: Literal["stopped", "completed"]


@dataclass(frozen=True)
class StepNote:
    """Something that happened on the current step short of passing it, for the lesson funnel."""

    kind: Literal["hint", "not_yet", "wrong_answer"]
    step_id: str
    detail: str = ""


@dataclass
class Outcome:
    state: ChatState
    texts: list[Text] = field(default_factory=list)
    started: RunState | None = None        # a new run to create
    ended: RunEnded | None = None          # the active run ends
    passed: list[PassedStep] = field(default_factory=list)
    progressed: RunState | None = None     # the active run after a check, even if it completed
    notes: list[StepNote] = field(default_factory=list)


def begin(lesson: Lesson, state: ChatState, workspace: Workspace, texts: list[Text]) -> Outcome:
    """A new run of the lesson at step 1: its platform prepared, then ``texts`` and the first step's task."""
    try:
        prepared = workspace.prepare(lesson, state.student_email)
    except NotReady as not_ready:
        return Outcome(state, [not_ready.text])
    run = RunState(lesson.id, context=prepared.context)
    texts += [*prepared.texts, step_text(lesson, 0)]
    return Outcome(replace(state, run=run, last_lesson_id=lesson.id), texts, started=run)


def begin_again(lesson: Lesson, state: ChatState, workspace: Workspace, intro: Text) -> Outcome:
    """The active run (if any) ends as stopped and a new run of the lesson starts at step 1."""
    ended = RunEnded("stopped") if state.run else None
    outcome = begin(lesson, replace(state, run=None), workspace, [intro])
    if outcome.started is None:  # the platform is not ready: the active run goes on
        return Outcome(state, outcome.texts)
    outcome.ended = ended
    return outcome


def stopped_by_admin(state: ChatState) -> Outcome:
    """An admin ended the student's active run; the student is told, as if they had said `stop`."""
    assert state.run is not None
    text = Text("admin.stopped", lesson=state.run.lesson_id, points=state.run.points)
    return Outcome(replace(state, run=None), [text], ended=RunEnded("stopped"))


def restarted_by_admin(lesson: Lesson, state: ChatState, workspace: Workspace) -> Outcome:
    """An admin started the lesson again for the student, as if they had said `restart`."""
    return begin_again(lesson, state, workspace, Text("admin.restarted", lesson=lesson.id))
