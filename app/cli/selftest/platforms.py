"""The platforms a lesson test starts, and the student's `@ zulip …` / `@ github …` actions on them.

Hosted git is the core's own: the run's repository lives under the test's directory and its
hooks post to the test's core. Zulip and GitHub are the test servers in ``tests/zulip_server``
and ``tests/github_server`` (the same HTTP APIs, on loopback), imported only when a lesson
needs them: where they are not installed, the lesson's test says so in one line.

Each platform sets up what a course's admin would have set up (the bot and the lesson's
streams; the organization, the App and the lesson's template repository), and nothing the
student does: that is the solution's part.
"""

from __future__ import annotations

import base64
import functools
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from flask import Flask
from pydantic import SecretStr, ValidationError

from app.cli.chat import ConsoleChat
from app.cli.chat_script import Actions, InstructionFailed
from app.lessons.schema import Lesson
from app.loop import StopFlag
from app.zulip.connect import connect
from app.zulip.receiver import CoreClient, Receiver

if TYPE_CHECKING:
    from githubkit import GitHub

    from tests.github_server.server import GitHubTestServer
    from tests.zulip_server.models import User
    from tests.zulip_server.server import ZulipTestServer

STUDENT_EMAIL = "student@example.com"
STUDENT_NAME = "Lesson Tester"
BOT_EMAIL = "lessonbot-bot@example.com"
TEMPLATE_MAX_BYTES = 1024 * 1024


class PlatformUnavailable(Exception):
    """The platform cannot be set up for the lesson here (its test server missing, no template); the message says why."""


class Platform:
    """Hosted git, and the base of the others: the student chats in the console and runs git in `$` lines."""

    replies_through_zulip = False  # True: the bot's replies go out through Zulip, and the student reads them there

    def __init__(self, lesson: Lesson, lesson_file: Path, core_url: str, timeout: float) -> None:
        self.lesson, self.lesson_file, self.core_url, self.timeout = lesson, lesson_file, core_url, timeout

    def settings(self) -> dict[str, Any]:
        """What the core's settings need to use this platform."""
        return {}

    def chat(self, app: Flask, workdir: Path) -> ConsoleChat:
        return ConsoleChat(app, STUDENT_EMAIL, STUDENT_NAME, workdir, echo=False, show_commands=False, quiet=True,
                           env=student_env(workdir))

    def actions(self) -> dict[str, Actions]:
        """The `@ PLATFORM …` lines this platform understands."""
        return {}

    def workers(self) -> list[tuple[Callable[[], bool], StopFlag]]:
        """Passes to run in the background beside the poller and the dispatcher (the Zulip receiver), each with its stop flag."""
        return []

    def close(self) -> None:
        """Stop what was started."""


def student_env(workdir: Path) -> dict[str, str]:
    """`$` lines run with a home of their own: the author's git configuration (signing, hooks, aliases) stays out."""
    home = workdir.parent / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / ".gitconfig")}


class StudentActions:
    """One platform's `@` actions: `@ zulip post …` calls `do_post(…)`; its parameters are the words it takes."""

    platform = ""

    def __call__(self, action: str, words: list[str]) -> None:
        method = getattr(self, "do_" + action.replace("-", "_"), None)
        if method is None:
            raise InstructionFailed(f"no action {action!r} for @ {self.platform} (known: {', '.join(self.known())})")
        parameters = list(inspect.signature(method).parameters.values())
        required = [parameter for parameter in parameters if parameter.default is inspect.Parameter.empty]
        if not len(required) <= len(words) <= len(parameters):
            raise InstructionFailed(f"usage: @ {self.platform} {self.usage(action, parameters)}")
        method(*words)

    def known(self) -> list[str]:
        return sorted(name.removeprefix("do_").replace("_", "-") for name in dir(self) if name.startswith("do_"))

    @staticmethod
    def usage(action: str, parameters: list[inspect.Parameter]) -> str:
        words = [name.upper() if parameter.default is inspect.Parameter.empty else f"[{name.upper()}]"
                 for parameter in parameters for name in [parameter.name]]
        return " ".join([action, *words])


# ---- Zulip ------------------------------------------------------------------------------------------


def lesson_streams(lesson: Lesson) -> list[str]:
    """The streams the lesson's checks look at: the course's admin made them, with the bot in them."""
    names = (getattr(step.check.params, "stream", None) for step in lesson.steps)
    return sorted({name for name in names if isinstance(name, str) and name})


@dataclass
class ZulipChat(ConsoleChat):
    """The student in Zulip: messages go to the bot as direct messages; replies are read from Zulip."""

    server: Any = None
    user: Any = None
    client: Any = None
    bot_email: str = BOT_EMAIL
    read: list[int] = field(default_factory=list)

    def send(self, text: str) -> str | None:
        answer = self.client.send_message({"type": "private", "to": [self.bot_email], "content": text})
        return None if answer.get("result") == "success" else f"Zulip refused the message: {answer.get('msg')}"

    def deliver(self) -> int:
        with self.lock:
            from_bot = [message for message in self.server.messages_to(self.user) if message.sender.email == self.bot_email]
            fresh = from_bot[len(self.replies):]
            for message in fresh:
                self.replies.append(message.content)
                self.read.append(message.id)
                if self.echo:
                    click.echo(click.style("bot> ", fg="green", bold=True) + message.content.replace("\n", "\n     "))
            return len(fresh)


class ZulipStudent(StudentActions):
    """`@ zulip …`: what the student does in Zulip's web app, through the official client."""

    platform = "zulip"

    def __init__(self, chat: ZulipChat) -> None:
        self.chat = chat

    def do_subscribe(self, stream: str) -> None:
        """Subscribe to a stream."""
        self.done(f"subscribing to {stream}", self.chat.client.add_subscriptions([{"name": stream}]))

    def do_post(self, stream: str, topic: str, text: str) -> None:
        """Post TEXT in STREAM, topic TOPIC."""
        message = {"type": "stream", "to": stream, "topic": topic, "content": text}
        self.done(f"the message in {stream} > {topic}", self.chat.client.send_message(message))

    def do_react(self, emoji: str) -> None:
        """React with EMOJI (a name such as thumbs_up) to the bot's latest message to the student."""
        self.chat.deliver()
        if not self.chat.read:
            raise InstructionFailed("there is no message from the bot to react to yet")
        reaction = {"message_id": self.chat.read[-1], "emoji_name": emoji}
        self.done(f"the reaction :{emoji}:", self.chat.client.add_reaction(reaction))

    @staticmethod
    def done(what: str, answer: dict[str, Any]) -> None:
        if answer.get("result") != "success":
            raise InstructionFailed(f"Zulip refused {what}: {answer.get('msg')}")


class ZulipPlatform(Platform):
    """The Zulip test server with the bot and the lesson's streams; the student chats there, the receiver listens."""

    replies_through_zulip = True

    def __init__(self, lesson: Lesson, lesson_file: Path, core_url: str, timeout: float) -> None:
        super().__init__(lesson, lesson_file, core_url, timeout)
        try:
            from tests.zulip_server.server import ZulipTestServer
        except ImportError as error:
            raise PlatformUnavailable(f"the Zulip test server (tests/zulip_server) cannot be started here: {error}") from None
        self.server: ZulipTestServer = ZulipTestServer().start()
        self.bot: User = self.server.add_user(BOT_EMAIL, "Lessonbot", bot=True)
        for stream in lesson_streams(lesson):
            self.server.add_stream(stream, subscribers=[self.bot])
        self.user: User = self.server.add_user(STUDENT_EMAIL, STUDENT_NAME)
        self.receiver: Receiver | None = None

    def settings(self) -> dict[str, Any]:
        return {"zulip_site": self.server.url, "zulip_email": self.bot.email, "zulip_api_key": SecretStr(self.bot.api_key),
                "zulip_rate_per_minute": 60_000.0}

    def chat(self, app: Flask, workdir: Path) -> ConsoleChat:
        chat = ZulipChat(app, STUDENT_EMAIL, STUDENT_NAME, workdir, echo=False, show_commands=False, quiet=True,
                         env=student_env(workdir), server=self.server, user=self.user, client=self.server.client(self.user))
        self.student = ZulipStudent(chat)
        self.receiver = self.listening(app)
        return chat

    def listening(self, app: Flask) -> Receiver:
        """The receiver, registered before the student's first message (a later start skips what came before it)."""
        settings = app.extensions["lessonbot.settings"]
        core = CoreClient(settings.core_url, settings.internal_token.get_secret_value())
        with app.app_context():
            receiver = Receiver(connect(settings), connect(settings), core, StopFlag(),
                                default_language=settings.default_language)
            receiver.load_progress()
            receiver.register_and_backfill()
        return receiver

    def actions(self) -> dict[str, Actions]:
        return {"zulip": self.student}

    def workers(self) -> list[tuple[Callable[[], bool], StopFlag]]:
        return [(self.receiver.run_once, self.receiver.stop)] if self.receiver else []

    def close(self) -> None:
        self.server.stop()


# ---- GitHub -----------------------------------------------------------------------------------------


def template_files(directory: Path) -> dict[str, bytes]:
    """The files of a lesson's template repository, kept beside the lesson as `<id>-template/`."""
    if not directory.is_dir():
        raise PlatformUnavailable(f"no template: make {directory.name}/ beside the lesson with the files of the "
                                  "organization's template repository (README, GitHub)")
    files: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise PlatformUnavailable(f"{directory.name}/{name} is a symbolic link; put the file itself in the template")
        if path.is_file():
            files[name] = path.read_bytes()
    if not files:
        raise PlatformUnavailable(f"{directory.name}/ beside the lesson holds no files")
    if sum(map(len, files.values())) > TEMPLATE_MAX_BYTES:
        raise PlatformUnavailable(f"{directory.name}/ holds more than {TEMPLATE_MAX_BYTES // 1024} KiB; a template stays small")
    return files


class GitHubStudent(StudentActions):
    """`@ github …`: what the student does on GitHub, through githubkit as their own account.

    The test server speaks no git protocol: a push is a commit made through the contents API.
    `{issue}` and `{pr}` in later words are the numbers of the issue and pull request opened last.
    """

    platform = "github"

    def __init__(self, server: GitHubTestServer, patience: float) -> None:
        self.server, self.patience = server, patience
        self.client: GitHub[Any] | None = None
        self.login = ""
        self.repo = ""
        self.numbers: dict[str, int] = {}

    def __call__(self, action: str, words: list[str]) -> None:
        super().__call__(action, [self.filled(word) for word in words])

    def filled(self, word: str) -> str:
        for name in ("issue", "pr"):
            if f"{{{name}}}" in word:
                if name not in self.numbers:
                    raise InstructionFailed(f"{{{name}}}: no {name} was opened yet")
                word = word.replace(f"{{{name}}}", str(self.numbers[name]))
        return word

    def call(self, what: str, request: Callable[[GitHub[Any]], Any], *, answer: bool = False) -> Any:
        """One request as the student (with `answer`, its parsed answer); InstructionFailed says what GitHub did instead."""
        from githubkit.exception import GitHubException, RequestFailed

        try:
            response = request(self.account())
            return response.parsed_data if answer else None
        except RequestFailed as error:
            said = error.response.text[:200].replace("\n", " ")
            raise InstructionFailed(f"GitHub answered {error.response.status_code} to {what}: {said}") from None
        except GitHubException as error:
            raise InstructionFailed(f"GitHub did not answer {what}: {error}") from None
        except ValidationError as error:
            said = error.errors()[0]["msg"]
            raise InstructionFailed(f"GitHub's answer to {what} is not as GitHub describes it: {said}") from None

    def account(self) -> GitHub[Any]:
        if self.client is None:
            raise InstructionFailed("say whose account this is first: `@ github user LOGIN`")
        return self.client

    def owner_and_name(self) -> tuple[str, str]:
        if not self.repo:
            raise InstructionFailed("no repository yet: accept the invitation to it first (`@ github accept`)")
        owner, _, name = self.repo.partition("/")
        return owner, name

    def do_user(self, login: str) -> None:
        """The student's GitHub account (made on the test server if new); the following `@ github` lines act as it."""
        try:
            account = self.server.add_student(login)
        except ValueError:  # already there: a second `@ github user` for the same login
            account = self.server.hub.account(login)
        self.client, self.login = self.server.client(account), login

    def do_accept(self) -> None:
        """Accept the invitations waiting for the student; the repository of the newest is the one to work in."""
        invitations = self.call("the list of invitations",
                                lambda gh: gh.rest.repos.list_invitations_for_authenticated_user(), answer=True)
        if not invitations:
            raise InstructionFailed(f"no repository invitation is waiting for {self.login} on GitHub")
        for invitation in invitations:
            accept = functools.partial(_accept_invitation, invitation.id)
            self.call(f"accepting the invitation to {invitation.repository.full_name}", accept)
        self.repo = max(invitations, key=lambda invitation: invitation.id).repository.full_name

    def do_branch(self, name: str, start: str = "main") -> None:
        """Make branch NAME at the tip of START and push it."""
        owner, repo = self.owner_and_name()
        tip = self.call(f"the branch {start}", lambda gh: gh.rest.git.get_ref(owner, repo, f"heads/{start}"), answer=True)
        self.call(f"the branch {name}", lambda gh: gh.rest.git.create_ref(owner, repo, ref=f"refs/heads/{name}",
                                                                          sha=tip.object_.sha))

    def do_commit(self, branch: str, path: str, text: str, message: str = "") -> None:
        """Write TEXT to the file PATH on BRANCH as one commit, and push it."""
        self.write(branch, path, text.encode(), message or f"Update {path}")

    def do_edit(self, branch: str, path: str, old: str, new: str, message: str = "") -> None:
        """Replace OLD with NEW in the file PATH on BRANCH as one commit, and push it."""
        current = self.read(branch, path)
        if current is None or old.encode() not in current[0]:
            raise InstructionFailed(f"{path} on {branch} does not contain {old!r}")
        self.write(branch, path, current[0].replace(old.encode(), new.encode()), message or f"Update {path}")

    def do_issue(self, title: str, body: str = "") -> None:
        """Open an issue; `{issue}` is its number from now on."""
        owner, repo = self.owner_and_name()
        issue = self.call(f"the issue {title!r}",
                          lambda gh: gh.rest.issues.create(owner, repo, title=title, body=body), answer=True)
        self.numbers["issue"] = issue.number

    def do_pr(self, head: str, base: str, title: str, body: str = "") -> None:
        """Open a pull request from HEAD into BASE; `{pr}` is its number from now on."""
        owner, repo = self.owner_and_name()
        pull = self.call(f"the pull request from {head}", lambda gh: gh.rest.pulls.create(
            owner, repo, title=title, head=head, base=base, body=body), answer=True)
        self.numbers["pr"] = pull.number

    def do_merge(self, method: str = "merge") -> None:
        """Merge the pull request `{pr}` (METHOD: merge or squash)."""
        owner, repo = self.owner_and_name()
        number = int(self.filled("{pr}"))
        if method not in ("merge", "squash"):
            raise InstructionFailed(f"merge with `merge` or `squash`, not {method!r}")
        chosen: Literal["merge", "squash"] = "squash" if method == "squash" else "merge"
        self.call(f"merging pull request #{number}", lambda gh: gh.rest.pulls.merge(owner, repo, number, merge_method=chosen))

    def do_reply(self, text: str) -> None:
        """Answer, in its thread, the newest review comment on the pull request `{pr}` that someone else wrote.

        The bot's review may still be on its way (it leaves through the outbox): the student waits for it.
        """
        owner, repo = self.owner_and_name()
        number = int(self.filled("{pr}"))
        deadline = time.monotonic() + self.patience
        while not (theirs := self.others_comments(owner, repo, number)):
            if time.monotonic() >= deadline:
                raise InstructionFailed(f"pull request #{number} got no review comment to answer within {self.patience:g} s")
            time.sleep(0.1)
        self.call(f"the reply on #{number}", lambda gh: gh.rest.pulls.create_reply_for_review_comment(
            owner, repo, number, theirs[-1].id, body=text))

    def others_comments(self, owner: str, repo: str, number: int) -> list[Any]:
        comments = self.call(f"the review comments of #{number}",
                             lambda gh: gh.rest.pulls.list_review_comments(owner, repo, number), answer=True)
        return [comment for comment in comments if comment.user is not None and comment.user.login != self.login]

    def read(self, branch: str, path: str) -> tuple[bytes, str] | None:
        """The file's bytes and blob id on the branch, or None when it is not there."""
        from githubkit.exception import RequestFailed

        owner, repo = self.owner_and_name()
        try:
            found = self.account().rest.repos.get_content(owner, repo, path, ref=branch).parsed_data
        except RequestFailed as error:
            if error.response.status_code == 404:
                return None
            raise InstructionFailed(f"GitHub answered {error.response.status_code} to reading {path}") from None
        content = getattr(found, "content", None)
        if content is None:
            raise InstructionFailed(f"{path} on {branch} is not a file")
        return base64.b64decode(content), str(found.sha)  # type: ignore[union-attr]

    def write(self, branch: str, path: str, content: bytes, message: str) -> None:
        owner, repo = self.owner_and_name()
        existing = self.read(branch, path)
        from githubkit.utils import UNSET

        encoded = base64.b64encode(content).decode()
        replaced = existing[1] if existing else UNSET  # GitHub wants the blob id of the file it replaces
        self.call(f"the commit of {path} on {branch}", lambda gh: gh.rest.repos.create_or_update_file_contents(
            owner, repo, path, message=message, content=encoded, branch=branch, sha=replaced))


def _accept_invitation(invitation_id: int, github: GitHub[Any]) -> Any:
    return github.rest.repos.accept_invitation_for_authenticated_user(invitation_id)


class GitHubPlatform(Platform):
    """The GitHub test server: the organization with the App installed, the lesson's template, webhooks to the core."""

    def __init__(self, lesson: Lesson, lesson_file: Path, core_url: str, timeout: float) -> None:
        super().__init__(lesson, lesson_file, core_url, timeout)
        files = template_files(lesson_file.parent / f"{lesson.id}-template")
        try:
            from tests.github_server.server import GitHubTestServer
        except ImportError as error:
            raise PlatformUnavailable(f"the GitHub test server (tests/github_server) cannot be started here: {error}") from None
        self.server: GitHubTestServer = GitHubTestServer().start()
        self.server.add_template(f"{lesson.id}-template", files)
        self.secret = secrets.token_urlsafe(24)
        self.server.set_webhook(f"{core_url}/github/hook", self.secret)
        self.student = GitHubStudent(self.server, timeout)

    def settings(self) -> dict[str, Any]:
        return {"github_api_url": self.server.url, "github_app_id": self.server.app.id, "github_org": self.server.org.login,
                "github_private_key": SecretStr(self.server.private_key_pem.decode()),
                "github_webhook_secret": SecretStr(self.secret)}

    def actions(self) -> dict[str, Actions]:
        return {"github": self.student}

    def close(self) -> None:
        self.server.stop()


PLATFORMS: dict[str, type[Platform]] = {"git": Platform, "zulip": ZulipPlatform, "github": GitHubPlatform}
