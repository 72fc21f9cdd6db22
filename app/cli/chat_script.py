"""Chat scripts: ``./manage.py chat --script FILE``, and the lessons' solutions that ``./manage.py lessons test`` runs.

One instruction per line::

    # a comment
    > start git-basics            send a chat message
    < Step 1 of 7                 expect a reply containing this text (case-insensitive)
    $ git clone -q {repo} work    run a shell command in the work directory ({repo}: the run's clone URL)
    @ github branch add-notes     act on a platform as the student (only under `lessons test`)

Replies are matched in order: each expectation looks for its text after the text the
previous one matched (later in the same reply, or in a later reply). ``$ cd DIR`` moves
the work directory.

``@ PLATFORM ACTION WORDS…`` lines do what the student does on a platform's web page
(``app/cli/selftest/``: ``@ zulip …`` and ``@ github …``, listed in the README, "Lesson
authoring"). The words are split as a shell splits them, so quote text with spaces; ``\\n``
in a word is a line break, and ``{issue}`` / ``{pr}`` are the numbers of the issue and
pull request the student opened last.

A script fails on the first expectation not met within the timeout, the first shell command
that fails, or the first platform action that cannot be done.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.cli.chat import ConsoleChat

MARKERS = (">", "<", "$", "@", "#")


class InstructionFailed(Exception):
    """One instruction of a script was not met; the message says what was wanted and what came."""


@dataclass
class ScriptFailure(Exception):
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


# A platform's actions: `@ github merge` calls actions["github"]("merge", []); InstructionFailed says why not.
Actions = Callable[[str, list[str]], None]


def platform_words(text: str) -> list[str]:
    """The words of an `@` line, split as a shell splits them, with `\\n` as a line break."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise InstructionFailed(f"cannot split `{text[:200]}` into words: {error}") from None
    return [word.replace("\\n", "\n") for word in words]


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ScriptRun:
    """One pass through a script in one chat; `seen` counts the replies that expectations have passed."""

    def __init__(self, chat: ConsoleChat, timeout: float, actions: Mapping[str, Actions] | None = None,
                 *, echo: bool = True) -> None:
        self.chat, self.timeout, self.actions, self.echo = chat, timeout, actions, echo
        self.seen = (0, 0)  # the reply, and the place in it, where the previous expectation's text ended

    def run(self, lines: list[str]) -> None:
        """Every instruction in order; ScriptFailure names the first line that was not met."""
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                self.instruction(line[0], line[1:].strip())
            except InstructionFailed as error:
                raise ScriptFailure(number, str(error)) from None
            self.after_instruction()

    def instruction(self, marker: str, text: str) -> None:
        if marker == ">":
            self.send(text)
        elif marker == "<":
            self.expect(text)
        elif marker == "$":
            self.shell(text)
        elif marker == "@":
            self.act(text)
        else:
            raise InstructionFailed("start the line with >, <, $, @ or #")

    def after_instruction(self) -> None:
        """Called after each instruction that was met (the lesson test reports passed steps here)."""

    def send(self, text: str) -> None:
        if self.echo:
            click.echo(click.style(f"you> {shorten(text)}", bold=True))
        refused = self.chat.send(text)
        if refused:
            raise InstructionFailed(refused)

    def expect(self, text: str) -> None:
        found = self.wait_for(text)
        if found is None:
            got = " | ".join(shorten(" ".join(reply.split())) for reply in self.unmatched() if reply.strip())
            raise InstructionFailed(f"expected a reply containing {text!r} within {self.timeout:g} s; "
                                    f"got: {shorten(got, 500) or 'no reply'}")
        self.seen = found

    def unmatched(self) -> list[str]:
        """The replies from the one where the previous expectation's text ended (whole, if more follows it there)."""
        first, offset = self.seen
        replies = self.chat.replies[first:]
        more_there = bool(replies) and any(char.isalnum() for char in replies[0][offset:])
        return replies if more_there else replies[1:]

    def wait_for(self, expected: str) -> tuple[int, int] | None:
        """Where `expected` (any case) ends in the replies, first found after `seen`; None after the timeout."""
        wanted = re.compile(re.escape(expected), re.IGNORECASE)
        deadline = time.monotonic() + self.timeout
        while True:
            self.chat.deliver()
            first, offset = self.seen
            for index in range(first, len(self.chat.replies)):
                found = wanted.search(self.chat.replies[index], offset if index == first else 0)
                if found:
                    return index, found.end()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def shell(self, command: str) -> None:
        try:
            code = self.chat.shell(command)
        except ValueError as error:  # ShellLineError: an unclosed quote
            raise InstructionFailed(str(error)) from None
        if code != 0:
            said = self.chat.last_output.strip().splitlines()
            raise InstructionFailed(f"command failed with exit code {code}: {shorten(command)}"
                                    + (f" ({shorten(said[-1])})" if said else ""))

    def act(self, text: str) -> None:
        words = platform_words(text)
        if len(words) < 2:
            raise InstructionFailed("an `@` line names a platform and an action, e.g. `@ github merge`")
        platform, action = words[0], words[1]
        if self.actions is None:
            raise InstructionFailed(f"`@ {platform}` lines act on the test platforms: run this script with "
                                    "./manage.py lessons test")
        if platform not in self.actions:
            here = ", ".join(sorted(self.actions)) or "none"
            raise InstructionFailed(f"no platform {platform!r} in this lesson's test (here: {here})")
        if self.echo:
            click.echo(click.style(f"@ {shorten(text)}", fg="cyan"))
        self.actions[platform](action, words[2:])


def run_script(chat: ConsoleChat, lines: list[str], timeout: float) -> bool:
    """Run a dialog script in the console chat; True when every expectation held."""
    try:
        ScriptRun(chat, timeout).run(lines)
    except ScriptFailure as failure:
        click.echo(f"script {failure}", err=True)
        return False
    click.echo("script passed")
    return True
