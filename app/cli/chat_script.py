"""Dialog scripts for ``./manage.py chat --script FILE``.

One instruction per line::

    # a comment
    > start git-basics        send a chat message
    < Step 1 of 7             expect a reply containing this text (case-insensitive)
    $ git clone {repo} work   run a shell command in the work directory ({repo}: the run's clone URL)

Replies are matched in order; the script fails (exit 1) on the first expectation not met
within the timeout or the first shell command that fails.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.cli.chat import ConsoleChat


def _wait_for(chat: ConsoleChat, expected: str, start: int, timeout: float) -> int | None:
    """Index just past the first reply from `start` on that contains `expected`, or None."""
    deadline = time.monotonic() + timeout
    while True:
        chat.deliver()
        for index in range(start, len(chat.replies)):
            if expected.casefold() in chat.replies[index].casefold():
                return index + 1
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_script(chat: ConsoleChat, lines: list[str], timeout: float) -> bool:
    """Run a dialog script; True when every expectation held."""
    seen = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker, text = line[0], line[1:].strip()
        if marker == ">":
            click.echo(click.style(f"you> {_shorten(text)}", bold=True))
            refused = chat.send(text)
            if refused:
                click.echo(f"script line {number}: {refused}", err=True)
                return False
        elif marker == "<":
            found = _wait_for(chat, text, seen, timeout)
            if found is None:
                got = " | ".join(reply.splitlines()[0] for reply in chat.replies[seen:]) or "no reply"
                click.echo(f"script line {number}: expected a reply containing {text!r} within {timeout:g} s; got: {got}",
                           err=True)
                return False
            seen = found
        elif marker == "$":
            try:
                code = chat.shell(text)
            except ValueError as error:  # ShellLineError: an unclosed quote
                click.echo(f"script line {number}: {error}", err=True)
                return False
            if code != 0:
                click.echo(f"script line {number}: command failed with exit code {code}: {text}", err=True)
                return False
        else:
            click.echo(f"script line {number}: start the line with >, < , $ or #", err=True)
            return False
    click.echo("script passed")
    return True
