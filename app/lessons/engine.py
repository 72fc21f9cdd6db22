"""The step engine: pure functions from a run's state and a check result to its next state.

Nothing here touches the database or a platform: checks come in through a callable,
and the caller persists what comes out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.i18n import Text
from app.lessons.checks import CheckContext, CheckResult, run_check
from app.lessons.schema import Lesson, Step

Checker = Callable[[Step, CheckContext], CheckResult]


def default_checker(step: Step, context: CheckContext) -> CheckResult:
    return run_check(step.check.type, step.check.params, context)


@dataclass(frozen=True)
class RunState:
    """An active run as the engine sees it."""

    lesson_id: str
    step_index: int = 0
    points: int = 0
    context: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None


@dataclass(frozen=True)
class PassedStep:
    step_id: str
    points: int


@dataclass
class Progress:
    """What evaluating a run produced: texts to say, steps passed, the new state."""

    run: RunState
    texts: list[Text] = field(default_factory=list)
    passed: list[PassedStep] = field(default_factory=list)
    completed: bool = False
    result: CheckResult | None = None


def step_text(lesson: Lesson, index: int) -> Text:
    step = lesson.step(index)
    return Text("step.say", step=index + 1, total=len(lesson.steps), text=step.say)


def status_text(lesson: Lesson, run: RunState) -> Text:
    return Text("status.run", lesson=lesson.id, step=run.step_index + 1, total=len(lesson.steps),
                points=run.points, max_points=lesson.max_points)


def current_step(lesson: Lesson, run: RunState) -> Step:
    return lesson.step(min(run.step_index, len(lesson.steps) - 1))


def evaluate(lesson: Lesson, run: RunState, *, answer: str | None = None, checker: Checker = default_checker,
             report_not_yet: bool = True) -> Progress:
    """Check the current step; on a pass, advance and try the following platform steps too.

    A student who did two steps before pushing gets both at once. Steps that want a typed
    answer are only evaluated with an answer, and an answer is used for one step only.
    """
    progress = Progress(run)
    first = True
    while True:
        step = current_step(lesson, progress.run)
        if step.check.needs_answer and (answer is None or not first):
            break
        result = checker(step, CheckContext(progress.run.context, answer if first else None))
        if first:
            progress.result = result
        if not result.passed:
            if first and report_not_yet:
                progress.texts.append(_not_yet_text(step, result))
            break
        _advance(lesson, progress, step)
        if progress.completed:
            return progress
        first = False
    if progress.passed:
        progress.texts.append(step_text(lesson, progress.run.step_index))
    return progress


def _not_yet_text(step: Step, result: CheckResult) -> Text:
    reason = result.reason or Text("check.crashed")
    if result.status == "error":
        return Text("step.error", reason=reason)
    return reason if step.check.needs_answer else Text("step.not_yet", reason=reason)


def _advance(lesson: Lesson, progress: Progress, step: Step) -> None:
    run = progress.run
    points = run.points + step.points
    progress.passed.append(PassedStep(step.id, step.points))
    progress.texts.append(Text("step.passed", step=run.step_index + 1, points=step.points, total_points=points))
    next_index = run.step_index + 1
    progress.run = replace(run, step_index=next_index, points=points)
    if next_index >= len(lesson.steps):
        progress.completed = True
        progress.texts.append(Text("completed", title=lesson.title, points=points, max_points=lesson.max_points))
