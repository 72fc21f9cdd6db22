"""./manage.py chat: a console stand-in for Zulip.

Lines you type go to the core as chat messages from one student; the bot's replies are
printed as they leave the outbox. The command also serves /git/hook for the hosted
repositories and runs poller passes, so a whole lesson works locally. ``--script``
runs a dialog file non-interactively (see README, "Lesson authoring").
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext
from pydantic import ValidationError
from werkzeug.serving import BaseWSGIServer, make_server

from app.chat.service import InboundChat, normalize_email, receive_message
from app.db import db
from app.git.repos import GitError, git, repo_path
from app.i18n import LANGUAGES
from app.loop import StopFlag, run_forever
from app.outbox.dispatcher import Dispatcher
from app.outbox.service import pending_replies
from app.runs.service import active_run
from app.settings import Settings
from app.students.models import Student
from app.workers.dispatcher import outbox_handlers
from app.workers.poller import Poller

POLL_EVERY_SECONDS = 2.0
MAX_TIMEOUT_SECONDS = 3600.0
QUIET_COMMAND_SECONDS = 120.0  # a `$` line under `lessons test` that waits for input must not hang the test


class ShellLineError(ValueError):
    """A `$ …` line that is not a shell command (an unclosed quote)."""


@dataclass
class ConsoleChat:
    """One student's chat with the core, in-process."""

    app: Flask
    email: str
    name: str
    workdir: Path
    replies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    echo: bool = True
    show_commands: bool = True  # off when a terminal already shows the `$` line as it is typed
    quiet: bool = False  # `$` commands' output is kept in last_output instead of shown (lessons test)
    env: dict[str, str] = field(default_factory=dict)  # over os.environ for `$` commands
    last_output: str = ""

    def send(self, text: str) -> str | None:
        """Hand one line to the core as a chat message; the reason when the core would refuse it (too long, NUL)."""
        try:
            message = InboundChat(message_id=f"console:{uuid.uuid4()}", sender_email=self.email,
                                  sender_full_name=self.name, content=text)
        except ValidationError as error:
            return "not sent: " + "; ".join(str(item["msg"]).removeprefix("Value error, ") for item in error.errors())
        with self.app.app_context():
            receive_message(message, self.app.extensions["lessonbot.catalog"], self.app.extensions["lessonbot.settings"])
        self.deliver()
        return None

    def deliver(self) -> int:
        """Print this student's pending replies and mark them sent (the console is their transport)."""
        with self.lock, self.app.app_context():
            student = db.session.scalars(sa.select(Student).where(Student.email == self.email)).one_or_none()
            if student is None:
                return 0
            items = pending_replies(student.id)
            for item in items:
                content = str(item.payload["content"])
                self.replies.append(content)
                if self.echo:
                    click.echo(click.style("bot> ", fg="green", bold=True) + content.replace("\n", "\n     ") + "\n")
                item.mark_sent()
            db.session.commit()
            return len(items)

    def clone_url(self) -> str:
        with self.app.app_context():
            student = db.session.scalars(sa.select(Student).where(Student.email == self.email)).one_or_none()
            run = active_run(student.id) if student else None
            return str(run.context.get("clone_url", "")) if run else ""

    def enter_clone(self) -> bool:
        """Move `$` into the student's clone of the active run's repository, if there is one here.

        A student who comes back (`make demo` again) continues where they stopped, and their
        commands run where their work is, as in the terminal they left.
        """
        url = self.clone_url()
        if not url:
            return False
        for candidate in (self.workdir, *sorted(path for path in self.workdir.iterdir() if path.is_dir())):
            if _origin_url(candidate) == url.rstrip("/"):
                self.workdir = candidate
                return True
        return False

    def shell(self, command: str) -> int:
        """Run a shell command in the work directory; `cd DIR` moves it. ShellLineError: it cannot be split into words."""
        self.last_output = ""
        try:
            words = shlex.split(command)
        except ValueError as error:
            raise ShellLineError(f"cannot run `{command[:200]}`: {error}") from None
        if words and words[0] == "cd":
            target = (self.workdir / (words[1] if len(words) > 1 else ".")).resolve()
            if not target.is_dir():
                self.last_output = f"cd: no directory {target}"
                if not self.quiet:
                    click.echo(self.last_output, err=True)
                return 1
            self.workdir = target
            return 0
        env = {**os.environ, **self.env, "LESSONBOT_REPO": self.clone_url(), "GIT_TERMINAL_PROMPT": "0"}
        command = command.replace("{repo}", self.clone_url())
        if self.quiet:
            code, self.last_output = _run_quietly(command, self.workdir, env)
            return code
        if self.show_commands:
            click.echo(click.style(f"$ {command}", fg="cyan"))
        return subprocess.run(command, shell=True, cwd=self.workdir, env=env).returncode


def _run_quietly(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) of a shell command; one still running after a while is stopped, children too."""
    process = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        output, _ = process.communicate(timeout=QUIET_COMMAND_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return 124, f"still running after {QUIET_COMMAND_SECONDS:g} s; stopped"
    return process.returncode, output


class Background(threading.Thread):
    """Delivers replies and runs poller and dispatcher passes (grades, admin jobs) while the console waits for input."""

    def __init__(self, chat: ConsoleChat, poller: Poller, dispatcher: Dispatcher, every: float = POLL_EVERY_SECONDS) -> None:
        super().__init__(daemon=True)
        self.chat, self.poller, self.dispatcher, self.every = chat, poller, dispatcher, every
        self.stop = StopFlag()
        self.polled_at = float("-inf")  # never: time.monotonic() counts from boot, and may be small

    def run(self) -> None:
        with self.chat.app.app_context():
            run_forever(self.run_once, 0.2, self.stop)

    def run_once(self) -> bool:
        """Show the replies; every `every` seconds a poller and a dispatcher pass. Never 'did work': the loop paces it."""
        self.chat.deliver()
        if time.monotonic() - self.polled_at >= self.every:
            self.polled_at = time.monotonic()
            self.poller.run_once()
            self.dispatcher.run_once()
        return False


def _origin_url(clone: Path) -> str | None:
    """The origin URL of a git work tree (not of a repository around it), without a trailing slash."""
    if not (clone / ".git").exists():
        return None
    found = subprocess.run(["git", "-C", str(clone), "config", "--get", "remote.origin.url"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip().rstrip("/") or None


def serve_hooks(app: Flask, hook_url: str, *, any_port_if_busy: bool = False) -> BaseWSGIServer:
    """Serve the app on the hook URL's loopback port so the repositories' hooks reach us.

    With `any_port_if_busy`, a port already taken (another demo, another program) gives way
    to a free one; the caller points the hooks there.
    """
    parsed = urlparse(hook_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    try:
        listening = _listen(host, port)
    except OSError as error:
        if not (any_port_if_busy and error.errno == errno.EADDRINUSE):
            raise click.ClickException(
                f"cannot listen on {host}:{port} for git hooks ({error.strerror}); pass --port or stop what uses it"
            ) from None
        listening = _listen(host, 0)
    return serve_on(app, listening)


def serve_on(app: Flask, listening: socket.socket) -> BaseWSGIServer:
    """Serve the app in a thread on a socket that already listens (and is closed here: the server has its own copy)."""
    host, port = listening.getsockname()[:2]
    with listening:  # werkzeug serves a duplicate of it (its own bind would sys.exit on a busy port)
        server = make_server(host, port, app, threaded=True, fd=listening.fileno())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listen_on_loopback() -> socket.socket:
    """A listening socket on a free loopback port."""
    return _listen("127.0.0.1", 0)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except OSError:
        listening.close()
        raise
    return listening


def _with_port(url: str, port: int) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(netloc=f"{parsed.hostname or '127.0.0.1'}:{port}"))


def _point_hooks_here(settings: Settings, email: str) -> None:
    """Aim the hook of the student's active repository at this console's port.

    A repository keeps the hook URL it was made with; the previous session may have listened
    on another port (the usual one was busy then), and its pushes would go unheard.
    """
    student = db.session.scalars(sa.select(Student).where(Student.email == email)).one_or_none()
    run = active_run(student.id) if student else None
    repo = repo_path(settings.git_root, run.repo_name) if run and run.repo_name else None
    if repo is None:
        return
    try:
        git(repo, "config", "lessonbot.hookurl", settings.hook_url)
    except GitError as error:
        click.echo(f"could not point {repo}'s hook at {settings.hook_url}: {error}; say `check` after a push", err=True)


def _check_database() -> None:
    """Touch the database before the lesson starts: unreachable or not migrated is manage.py's one line."""
    db.session.execute(sa.select(Student.id).limit(1))


def _student_email(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The address as the core stores it (lower case), or one line saying why it is not one."""
    try:
        return normalize_email(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _finite_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_SECONDS:
        raise click.BadParameter(f"must be a number of seconds between 0 and {MAX_TIMEOUT_SECONDS:g}, not {value:g}")
    return value


def _prepare_workdir(workdir: Path) -> Path:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"cannot use {workdir} as the work directory ({error.strerror})") from None
    return workdir.resolve()


def _read_script(path: Path) -> list[str]:
    try:
        return path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise click.ClickException(f"the script {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise click.ClickException(f"cannot read the script {path} ({error.strerror})") from None


@click.command("chat")
@click.option("--student", "email", default="student@example.com", show_default=True, callback=_student_email,
              help="Chat as this student.")
@click.option("--name", default="Console Student", show_default=True, help="The student's full name.")
@click.option("--script", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Run a dialog script instead of reading the keyboard.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default="instance/work",
              show_default=True, help="Where `$ command` lines (and you) run git.")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Loopback port for git hooks (default: from LESSONBOT_HOOK_URL, or a free one when that is busy).")
@click.option("--language", type=click.Choice(LANGUAGES),
              help="The language of a new student (default: LESSONBOT_DEFAULT_LANGUAGE); `lang` changes it later.")
@click.option("--start", "start_lesson", help="Send `start LESSON` first (the guided demo).")
@click.option("--timeout", default=15.0, show_default=True, callback=_finite_seconds,
              help="Seconds a script waits for an expected reply.")
@with_appcontext
def chat_command(email: str, name: str, script: Path | None, workdir: Path, port: int | None,
                 language: str | None, start_lesson: str | None, timeout: float) -> None:
    """Talk to Lessonbot from the console, as a student would in Zulip."""
    lines = _read_script(script) if script is not None else None
    _check_database()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings: Settings = app.extensions["lessonbot.settings"]
    if language is not None:
        settings = settings.model_copy(update={"default_language": language})
    if port is not None:
        settings = settings.model_copy(update={"hook_url": f"http://127.0.0.1:{port}/git/hook"})
    workdir = _prepare_workdir(workdir)
    server = serve_hooks(app, settings.hook_url, any_port_if_busy=port is None)
    if server.port != urlparse(settings.hook_url).port:
        click.echo(f"{settings.hook_url} is busy; git hooks reach this chat on port {server.port}.")
        settings = settings.model_copy(update={"hook_url": _with_port(settings.hook_url, server.port)})
    app.extensions["lessonbot.settings"] = settings
    _point_hooks_here(settings, email)
    chat = ConsoleChat(app, email, name, workdir)
    poller = Poller(settings, app.extensions["lessonbot.catalog"])
    dispatcher = Dispatcher(outbox_handlers(settings, app.extensions["lessonbot.catalog"], zulip=False))
    background = Background(chat, poller, dispatcher)
    background.start()
    try:
        if lines is not None:
            from app.cli.chat_script import run_script

            ok = run_script(chat, lines, timeout)
            sys.exit(0 if ok else 1)
        _interactive(chat, start_lesson)
    finally:
        background.stop.stop()
        background.join(timeout=5)
        server.shutdown()


def _interactive(chat: ConsoleChat, start_lesson: str | None) -> None:
    chat.show_commands = not sys.stdin.isatty()
    click.echo(f"Chatting as {chat.email}. Type chat messages; `$ command` runs a shell command in {chat.workdir}")
    click.echo("(`$ cd DIR` moves there); Ctrl-D or /quit ends. Try: help\n")
    if start_lesson:
        click.echo(click.style(f"you> start {start_lesson}", bold=True))
        chat.send(f"start {start_lesson}")
        if chat.enter_clone():
            click.echo(f"`$` runs in {chat.workdir} now, your clone of the lesson's repository.\n")
        else:
            click.echo(f"Run git in {chat.workdir} (here with `$ …`, or in another terminal).\n")
    while True:
        try:
            line = input()
        except (EOFError, KeyboardInterrupt):
            click.echo("\nbye")
            return
        if line.strip() in ("/quit", "/exit"):
            return
        if line.startswith("$"):
            try:
                chat.shell(line[1:].strip())
            except ShellLineError as error:
                click.echo(str(error), err=True)
            chat.deliver()
        elif line.strip():
            refused = chat.send(line)
            if refused:
                click.echo(refused, err=True)
