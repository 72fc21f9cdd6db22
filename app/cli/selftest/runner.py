"""A lesson through its solution: each step reported as it passes, each quiz tried with a wrong answer first.

The solution is the chat script `<id>.solution.chat` beside the lesson file. Each lesson runs
alone: its own directory, database, repositories and platform servers, all gone afterwards.
Before the solution's first answer to a quiz (a step answered in chat), a wrong answer goes
first and the lesson must say it is not right. At the end the run must be complete, with
every point.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask

from app.cli.chat import Background, ConsoleChat, listen_on_loopback, serve_on
from app.cli.chat_script import Actions, InstructionFailed, ScriptFailure, ScriptRun
from app.cli.selftest.core import fresh_app, isolated_settings, migrated_database, quiet_logs
from app.cli.selftest.platforms import PLATFORMS, STUDENT_EMAIL, Platform, PlatformUnavailable
from app.db import db
from app.i18n import Text
from app.lessons.answer import normalize
from app.lessons.commands import parse
from app.lessons.engine import current_step
from app.lessons.schema import Lesson, Step
from app.loop import StopFlag, run_forever
from app.outbox.dispatcher import Dispatcher
from app.runs.models import LessonRun, RunStatus
from app.runs.service import run_state
from app.students.models import Student
from app.workers.dispatcher import outbox_handlers
from app.workers.poller import Poller

SOLUTION_SUFFIX = ".solution.chat"
SOLUTION_MAX_BYTES = 256 * 1024
WRONG_ANSWERS = ("surely not this", "something else entirely")


def solution_file(lesson_file: Path) -> Path:
    return lesson_file.with_name(lesson_file.stem + SOLUTION_SUFFIX)


@dataclass(frozen=True)
class Report:
    lesson_id: str
    passed: bool
    line: str


class Failed(Exception):
    """The lesson's test failed; `where` is ` at step N of M (id)` when the run was on a step then."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(reason)
        self.reason, self.where = reason, where


def run_solutions(lessons: list[tuple[Lesson, Path]], timeout: float, *, verbose: bool = False) -> list[Report]:
    """Every lesson through its solution, one after the other; a line for each passed step and each lesson."""
    reports = []
    with tempfile.TemporaryDirectory(prefix="lessonbot-lessons-test-") as scratch, quiet_logs(verbose):
        root = Path(scratch)

        @functools.cache
        def migrated() -> Path:  # made once, when the first lesson with a solution needs it
            (root / "migrated").mkdir()
            return migrated_database(root / "migrated", lessons[0][1].parent)

        for lesson, lesson_file in lessons:
            report = run_solution(lesson, lesson_file, migrated, root / lesson.id, timeout, verbose=verbose)
            click.echo(report.line, err=not report.passed)
            reports.append(report)
    return reports


def run_solution(lesson: Lesson, lesson_file: Path, migrated: Callable[[], Path], workdir: Path, timeout: float,
                *, verbose: bool = False) -> Report:
    started = time.monotonic()
    try:
        lines = read_solution(lesson_file)
        with running_lesson(lesson, lesson_file, migrated(), workdir, timeout, verbose) as (app, chat, actions):
            summary = LessonTest(app, lesson, chat, timeout, actions, echo=verbose).result(lines)
    except Failed as failure:
        return Report(lesson.id, False, f"{lesson.id}: FAILED{failure.where}: {failure.reason}")
    except PlatformUnavailable as error:
        return Report(lesson.id, False, f"{lesson.id}: FAILED: {error}")
    except Exception as error:  # one line for the author, whatever broke; --verbose shows the traceback above it
        if verbose:
            traceback.print_exc()
        said = str(error).strip().splitlines()
        return Report(lesson.id, False, f"{lesson.id}: FAILED: {type(error).__name__}: {said[0] if said else ''}"
                                        + ("" if verbose else " (--verbose shows more)"))
    return Report(lesson.id, True, f"{lesson.id}: passed: {summary} ({time.monotonic() - started:.1f} s)")


def read_solution(lesson_file: Path) -> list[str]:
    path = solution_file(lesson_file)
    try:
        if path.stat().st_size > SOLUTION_MAX_BYTES:
            raise Failed(f"the solution {path.name} is larger than {SOLUTION_MAX_BYTES // 1024} KiB")
        return path.read_bytes().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise Failed(f"no solution: write {path.name} beside {lesson_file.name} (README, \"Lesson authoring\")") from None
    except UnicodeDecodeError as error:
        raise Failed(f"the solution {path.name} is not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise Failed(f"cannot read the solution {path.name} ({error.strerror})") from None


@contextmanager
def running_lesson(lesson: Lesson, lesson_file: Path, migrated: Path, workdir: Path, timeout: float,
                   verbose: bool) -> Iterator[tuple[Flask, ConsoleChat, dict[str, Actions]]]:
    """The lesson's platform and a core of its own, served on loopback, with a poller, a dispatcher and the student's chat."""
    platform_class = PLATFORMS.get(lesson.platform)
    if platform_class is None:
        raise Failed(f"no test platform for {lesson.platform!r} (known: {', '.join(sorted(PLATFORMS))})")
    with ExitStack() as stack:
        listening = listen_on_loopback()
        stack.callback(listening.close)
        core_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        platform = platform_class(lesson, lesson_file, core_url, timeout)
        stack.callback(platform.close)
        settings = isolated_settings(workdir, lesson_file.parent, hook_url=f"{core_url}/git/hook", core_url=core_url,
                                     **platform.settings())
        app = fresh_app(settings, migrated)
        stack.callback(_dispose, app)
        server = serve_on(app, listening)
        stack.callback(server.shutdown)
        (workdir / "work").mkdir(parents=True)
        chat = platform.chat(app, workdir / "work")
        chat.echo = verbose
        stack.enter_context(_background(app, chat, platform))
        yield app, chat, platform.actions()


@contextmanager
def _background(app: Flask, chat: ConsoleChat, platform: Platform) -> Iterator[None]:
    """Poller and dispatcher passes (and the platform's workers) in threads while the solution runs."""
    settings, catalog = app.extensions["lessonbot.settings"], app.extensions["lessonbot.catalog"]
    with app.app_context():
        dispatcher = Dispatcher(outbox_handlers(settings, catalog, zulip=platform.replies_through_zulip))
    background = Background(chat, Poller(settings, catalog), dispatcher, every=0.0)
    workers = platform.workers()
    threads = [threading.Thread(target=_in_app, args=(app, work, stop), daemon=True) for work, stop in workers]
    for thread in [background, *threads]:
        thread.start()
    try:
        yield
    finally:
        for stop in [background.stop, *(stop for _, stop in workers)]:
            stop.stop()
        for thread in [background, *threads]:
            thread.join(timeout=10)
        with app.app_context():
            dispatcher.close()


def _in_app(app: Flask, work: Callable[[], bool], stop: StopFlag) -> None:
    with app.app_context():
        run_forever(work, 0.05, stop)


def _dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class LessonTest(ScriptRun):
    """The solution's run: before a quiz's first answer a wrong one, and a line for each step as it passes."""

    def __init__(self, app: Flask, lesson: Lesson, chat: ConsoleChat, timeout: float, actions: dict[str, Actions],
                 *, echo: bool) -> None:
        super().__init__(chat, timeout, actions, echo=echo)
        self.app, self.lesson = app, lesson
        self.probed: set[str] = set()
        self.reported: set[str] = set()

    def send(self, text: str) -> None:
        step = self.current_step()
        if step is not None and step.check.needs_answer and step.id not in self.probed and parse(text) is None:
            self.probed.add(step.id)
            self.probe(step)
        super().send(text)

    def probe(self, step: Step) -> None:
        """A wrong answer first: the lesson must say it is not right, and stay on the step."""
        wrong = wrong_answer(step)
        super().send(wrong)
        try:
            self.expect(Text("answer.wrong").render(self.language()))
        except InstructionFailed as error:
            raise InstructionFailed(f"the wrong answer {wrong!r}: {error}") from None

    def after_instruction(self) -> None:
        for line in self.newly_passed():
            click.echo(line)

    def newly_passed(self) -> list[str]:
        lines = []
        for step_id, points, source in self.snapshot().passed:
            if step_id in self.reported:
                continue
            self.reported.add(step_id)
            number = next(index for index, step in enumerate(self.lesson.steps, 1) if step.id == step_id)
            probed = ", a wrong answer refused first" if step_id in self.probed else ""
            lines.append(f"{self.lesson.id}: step {number}/{len(self.lesson.steps)} {step_id} passed "
                         f"(+{points}, {source}{probed})")
        return lines

    def result(self, lines: list[str]) -> str:
        """The summary of a run through the whole solution; Failed names the line that was not met, or what is missing."""
        try:
            self.run(lines)
        except ScriptFailure as failure:
            raise Failed(f"solution {failure}", self.where()) from None
        return self.finish()

    def finish(self) -> str:
        """The summary; Failed when the solution did not take the lesson to its end with every point."""
        self.after_instruction()
        run = self.snapshot()
        if run.status is None:
            raise Failed(f"the solution never started the lesson (`> start {self.lesson.id}`)")
        if run.status != RunStatus.COMPLETED or run.points != self.lesson.max_points:
            raise Failed(f"the solution ended with the lesson {run.status}, {run.points} of {self.lesson.max_points} points",
                         self.where())
        quizzes = sum(step.check.needs_answer for step in self.lesson.steps)
        return (f"{len(self.lesson.steps)} steps, {run.points} of {self.lesson.max_points} points, "
                f"{quizzes} {'quiz' if quizzes == 1 else 'quizzes'} refused a wrong answer first")

    def where(self) -> str:
        """` at step N of M (id)` while the student's run of this lesson is active, or nothing."""
        step = self.current_step()
        if step is None:
            return ""
        number = next(index for index, candidate in enumerate(self.lesson.steps, 1) if candidate.id == step.id)
        return f" at step {number} of {len(self.lesson.steps)} ({step.id})"

    def current_step(self) -> Step | None:
        """The step the student's active run of this lesson is on, as the core sees it now."""
        with self.app.app_context():
            run = db.session.scalars(self._latest(LessonRun.status == RunStatus.ACTIVE)).first()
            return current_step(self.lesson, run_state(run)) if run and run.lesson_id == self.lesson.id else None

    def language(self) -> str:
        with self.app.app_context():
            student = db.session.scalars(sa.select(Student).where(Student.email == STUDENT_EMAIL)).one_or_none()
            return student.language if student else "en"

    def snapshot(self) -> RunSnapshot:
        """The student's latest run of this lesson, as it is now."""
        with self.app.app_context():
            run = db.session.scalars(self._latest(LessonRun.lesson_id == self.lesson.id)).first()
            if run is None:
                return RunSnapshot(None, 0, [])
            return RunSnapshot(run.status, run.points, [(result.step_id, result.points, result.source)
                                                        for result in run.results])

    @staticmethod
    def _latest(condition: sa.ColumnElement[bool]) -> sa.Select[LessonRun]:
        return (sa.select(LessonRun).join(Student).where(Student.email == STUDENT_EMAIL, condition)
                .order_by(LessonRun.id.desc()).limit(1))


@dataclass(frozen=True)
class RunSnapshot:
    status: RunStatus | None  # None: no run yet
    points: int
    passed: list[tuple[str, int, str]]  # step id, points, how it was confirmed


def wrong_answer(step: Step) -> str:
    """An answer the step does not accept and the chat does not read as a command."""
    accepted = {normalize(value) for value in getattr(step.check.params, "accept", [])}
    for candidate in WRONG_ANSWERS:
        if normalize(candidate) not in accepted and parse(candidate) is None:
            return candidate
    raise InstructionFailed(f"step {step.id} accepts every wrong answer tried ({', '.join(WRONG_ANSWERS)})")
