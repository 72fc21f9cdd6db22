"""The chat dialog: pure functions from (message, state) to (replies, new state).

All I/O goes through the :class:`Workspace` (platform setup) and the engine's checker;
the service layer loads the state and persists the outcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from app.chat.markdown import quote_inline
from app.i18n import LANGUAGES, Text
from app.lessons.catalog import Catalog
from app.lessons.checks import CheckResult
from app.lessons.commands import COMMANDS, Command, normalize_text, parse
from app.lessons.conversation import (
    ChatState,
    Outcome,
    RunEnded,
    StepNote,
    begin,
    begin_again,
    restarted_by_admin,
    stopped_by_admin,
)
from app.lessons.engine import Checker, current_step, default_checker, evaluate, status_text, step_text
from app.lessons.platforms import Workspace
from app.lessons.schema import Lesson

__all__ = ["COMMANDS", "ChatState", "Command", "Outcome", "RunEnded", "StepNote", "handle", "parse", "restarted_by_admin",
           "stopped_by_admin", "strip_mention"]
NOTE_CHARS = 300

# A Zulip mention: @**Name**, @**Name|12**, and the silent @_**Name**.
_MENTION = re.compile(r"@_?\*\*(?P<name>[^*|]+?)(?:\|\d+)?\*\*")


def strip_mention(text: str, bot_name: str = "Lessonbot") -> str:
    """Drop the bot's own @-mentions; any other mention (``@**all**`` too) stays part of the text."""
    own_name = normalize_text(bot_name)
    return _MENTION.sub(lambda match: " " if normalize_text(match["name"]) == own_name else match[0], text).strip()


def handle(text: str, state: ChatState, catalog: Catalog, workspace: Workspace,
           checker: Checker = default_checker, bot_name: str = "Lessonbot") -> Outcome:
    """Answer one message from a student.

    A command means the same on every step; the lesson validator refuses accepted
    answers that would read as a command, so an answer step never swallows one.
    """
    text = strip_mention(text, bot_name)
    if not normalize_text(text):
        return Outcome(state, [Text("empty")])
    command = parse(text)
    lesson = catalog.get(state.run.lesson_id) if state.run else None
    if command is None:
        if state.run and lesson and current_step(lesson, state.run).check.needs_answer:
            return _check(state, lesson, checker, answer=text)
        return Outcome(state, [Text("unknown", text=quote_inline(text))])
    handler = _HANDLERS[command.name]
    return handler(command, state, catalog, workspace, checker)


def _help(command: Command, state: ChatState, *_: object) -> Outcome:
    return Outcome(state, [Text("help")])


def _lessons(command: Command, state: ChatState, catalog: Catalog, *_: object) -> Outcome:
    if not len(catalog):
        return Outcome(state, [Text("lessons.none")])
    items = [Text("lessons.item", id=lesson.id, title=lesson.title, steps=len(lesson.steps),
                  max_points=lesson.max_points) for lesson in catalog]
    return Outcome(state, [Text("lessons.header"), *items, Text("lessons.footer")])


def _start(command: Command, state: ChatState, catalog: Catalog, workspace: Workspace, _: Checker) -> Outcome:
    if not command.argument:
        return Outcome(state, [Text("start.usage")])
    lesson = catalog.get(command.argument)
    if lesson is None:
        return Outcome(state, [Text("start.unknown", lesson=quote_inline(command.argument, 40))])
    if state.run is not None and state.run.lesson_id == lesson.id:
        return _resume(lesson, state, workspace)
    if state.run is not None:
        active = catalog.get(state.run.lesson_id)
        total = len(active.steps) if active else 0
        return Outcome(state, [Text("start.busy", lesson=state.run.lesson_id, step=state.run.step_index + 1, total=total)])
    intro = Text("start.ok", title=lesson.title, total=len(lesson.steps), max_points=lesson.max_points)
    return begin(lesson, state, workspace, [intro])


def _resume(lesson: Lesson, state: ChatState, workspace: Workspace) -> Outcome:
    """`start` of the lesson already under way: where the student is and the step's task, not a refusal.

    A student who comes back days later types `start` again; the run goes on where it was.
    """
    assert state.run is not None
    welcome = Text("start.resume", title=lesson.title, step=state.run.step_index + 1, total=len(lesson.steps),
                   points=state.run.points, max_points=lesson.max_points)
    return Outcome(state, [welcome, *workspace.recall(lesson, state.run.context), step_text(lesson, state.run.step_index)])


def _check(state: ChatState, lesson: Lesson, checker: Checker, answer: str | None = None) -> Outcome:
    assert state.run is not None
    step = current_step(lesson, state.run)
    progress = evaluate(lesson, state.run, answer=answer, checker=checker)
    outcome = Outcome(replace(state, run=progress.run), progress.texts, passed=progress.passed,
                      progressed=progress.run, notes=_not_yet_notes(step.id, progress.result, answer))
    if progress.completed:
        outcome.ended = RunEnded("completed")
        outcome.state = replace(state, run=None)
    return outcome


def _not_yet_notes(step_id: str, result: CheckResult | None, answer: str | None) -> list[StepNote]:
    """A "not yet" worth counting: the wrong answer itself, or the reason in English (one language to group by)."""
    if result is None or result.status != "not_yet":
        return []
    if answer is not None:
        return [StepNote("wrong_answer", step_id, normalize_text(answer)[:NOTE_CHARS])]
    reason = result.reason.render("en") if result.reason else ""
    return [StepNote("not_yet", step_id, reason[:NOTE_CHARS])]


def _check_command(command: Command, state: ChatState, catalog: Catalog, _: Workspace, checker: Checker) -> Outcome:
    lesson = catalog.get(state.run.lesson_id) if state.run else None
    if state.run is None or lesson is None:
        return Outcome(state, [Text("no_run")])
    if current_step(lesson, state.run).check.needs_answer:
        return Outcome(state, [Text("step.answer_expected"), step_text(lesson, state.run.step_index)])
    return _check(state, lesson, checker)


def _hint(command: Command, state: ChatState, catalog: Catalog, *_: object) -> Outcome:
    lesson = catalog.get(state.run.lesson_id) if state.run else None
    if state.run is None or lesson is None:
        return Outcome(state, [Text("no_run")])
    step = current_step(lesson, state.run)
    text = Text("hint.text", text=step.hint) if step.hint else Text("hint.none")
    return Outcome(state, [text], notes=[StepNote("hint", step.id)])


def _status(command: Command, state: ChatState, catalog: Catalog, *_: object) -> Outcome:
    lesson = catalog.get(state.run.lesson_id) if state.run else None
    if state.run is None or lesson is None:
        return Outcome(state, [Text("no_run")])
    return Outcome(state, [status_text(lesson, state.run), step_text(lesson, state.run.step_index)])


def _stop(command: Command, state: ChatState, *_: object) -> Outcome:
    if state.run is None:
        return Outcome(state, [Text("no_run")])
    text = Text("stop.ok", lesson=state.run.lesson_id, points=state.run.points)
    return Outcome(replace(state, run=None), [text], ended=RunEnded("stopped"))


def _restart(command: Command, state: ChatState, catalog: Catalog, workspace: Workspace, _: Checker) -> Outcome:
    lesson_id = state.run.lesson_id if state.run else state.last_lesson_id
    lesson = catalog.get(lesson_id) if lesson_id else None
    if lesson is None:
        return Outcome(state, [Text("restart.none")])
    return begin_again(lesson, state, workspace, Text("restart.ok", lesson=lesson.id))


def _lang(command: Command, state: ChatState, *_: object) -> Outcome:
    language = command.argument.casefold()
    if language not in LANGUAGES:
        return Outcome(state, [Text("lang.usage")])
    return Outcome(replace(state, language=language), [Text("lang.ok")])


def _link(command: Command, state: ChatState, catalog: Catalog, workspace: Workspace, _: Checker) -> Outcome:
    platform, _space, login = command.argument.partition(" ")
    if platform == "github" and login:
        return Outcome(state, workspace.link_github(state.student_email, login))
    if command.argument:
        return Outcome(state, [Text("link.usage")])
    url = workspace.link_url(state.student_email)
    return Outcome(state, [Text("link.url", url=url) if url else Text("link.unavailable")])


Handler = Callable[[Command, ChatState, Catalog, Workspace, Checker], Outcome]
_HANDLERS: dict[str, Handler] = {
    "help": _help, "lessons": _lessons, "start": _start, "check": _check_command, "hint": _hint,
    "status": _status, "stop": _stop, "restart": _restart, "lang": _lang, "link": _link,
}
