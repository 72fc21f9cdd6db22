"""./manage.py chat --script: a whole lesson from the console, with real git and real hooks."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.settings import PROJECT_ROOT
from tests.conftest import SECRETS
from tests.pg import free_port

SCRIPT = PROJECT_ROOT / "app" / "lessons" / "files" / "git-basics.solution.chat"


def _chat_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_GIT_ROOT=str(tmp_path / "git"),
               HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1")
    return env


def _run_chat(database_url: str, tmp_path: Path, script: Path, email: str,
              wait: float = 10) -> subprocess.CompletedProcess[str]:
    env = _chat_env(database_url, tmp_path)
    return subprocess.run([sys.executable, "manage.py", "chat", "--student", email, "--script", str(script),
                           "--workdir", str(tmp_path / "work"), "--port", str(free_port()), "--timeout", str(wait)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_scripted_console_student_completes_git_basics(app: Flask, database_url: str, tmp_path: Path) -> None:
    result = _run_chat(database_url, tmp_path, SCRIPT, "console@example.com")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Score: 100 of 100" in result.stdout and "script passed" in result.stdout
    assert "write `link`" not in result.stdout  # no Google here: the grade is kept (the script's last line)


def test_failed_expectation_exits_nonzero_and_says_why(app: Flask, database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "wrong.chat"
    script.write_text("> help\n< this text never comes\n")
    result = _run_chat(database_url, tmp_path, script, "wrong@example.com", wait=2)
    assert result.returncode == 1
    assert "script line 2: expected a reply containing 'this text never comes'" in result.stderr


def test_a_platform_action_in_the_console_says_where_it_runs(app: Flask, database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "platform.chat"
    script.write_text("> help\n@ github merge\n")
    result = _run_chat(database_url, tmp_path, script, "actions@example.com", wait=2)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("script line 2: `@ github` lines act on the test platforms: "
                                     "run this script with ./manage.py lessons test")


class LiveChat:
    """`manage.py chat` as a newcomer runs it: in a terminal (a pty) or behind a pipe, read as it prints."""

    def __init__(self, args: list[str], env: dict[str, str], *, tty: bool) -> None:
        command = [sys.executable, "manage.py", "chat", *args]
        env = {**env, "PYTHONUNBUFFERED": "1"}  # a pipe shows each line as it is printed
        if tty:
            controller, terminal = os.openpty()
            self.process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal,
                                            cwd=PROJECT_ROOT, env=env)
            os.close(terminal)
            self._write = lambda data: os.write(controller, data)
            self._read = lambda: os.read(controller, 65536)
        else:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env, bufsize=0)
            stdin, stdout = self.process.stdin, self.process.stdout
            assert stdin is not None and stdout is not None
            self._write = stdin.write
            self._read = lambda: stdout.read(65536)
        self.output = ""
        self.seen = 0
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        while True:
            try:
                data = self._read()
            except OSError:  # the terminal closes when the chat ends
                return
            if not data:
                return
            self.output += data.decode(errors="replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        self._write((line + "\n").encode())

    def expect(self, text: str, timeout: float = 30) -> str:
        """The output up to and including `text`, which must appear after what was expected before."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(text, self.seen)) < 0:
            assert time.monotonic() < deadline and self.process.poll() is None, (
                f"no {text!r} in the chat's output:\n{self.output[-3000:]}")
            time.sleep(0.05)
        self.seen = found + len(text)
        return self.output[:self.seen]

    def quit(self) -> None:
        self.type("/quit")
        assert self.process.wait(timeout=30) == 0, self.output[-3000:]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def _demo_args(tmp_path: Path, *more: str) -> list[str]:
    return ["--student", "demo@example.com", "--name", "Demo Student", "--workdir", str(tmp_path / "demo"),
            "--start", "git-basics", *more]


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_a_shell_line_shows_once_and_russian_stays_available(app: Flask, database_url: str, tmp_path: Path,
                                                             tty: bool) -> None:
    """In a terminal the typed `$` line is already on screen; from a pipe the chat shows it."""
    chat = LiveChat(_demo_args(tmp_path, "--language", "ru", "--port", str(free_port())),
                    _chat_env(database_url, tmp_path), tty=tty)
    chat.expect("**Шаг 1 из 7.**")
    chat.type("$ echo shown-$((20 + 22))")
    chat.expect("shown-42")
    chat.quit()
    assert chat.output.count("$ echo shown-$((20 + 22))") == 1, chat.output


def test_demo_rerun_speaks_english_resumes_the_step_in_the_clone_with_hooks_on_a_free_port(
        app: Flask, database_url: str, tmp_path: Path, busy_port: int) -> None:
    env = {**_chat_env(database_url, tmp_path), "LESSONBOT_HOOK_URL": f"http://127.0.0.1:{busy_port}/git/hook"}
    first = LiveChat(_demo_args(tmp_path, "--language", "en"), env, tty=False)
    first.expect(f"http://127.0.0.1:{busy_port}/git/hook is busy; git hooks reach this chat on port")
    clone_url = re.search(r"git clone (\S+)", first.expect("**Step 1 of 7.**"))
    assert clone_url is not None
    folder = Path(clone_url[1]).name.removesuffix(".git")
    assert re.fullmatch(r"git-basics-demo-[0-9a-f]{8}", folder)  # the README's sample names it so
    first.type("$ git clone -q {repo}")
    first.type(f"$ cd {folder}")
    first.type('$ git config user.name "Demo"; git config user.email demo@example.com')
    first.type('$ echo "# My project" > README.md && git add README.md && git commit -qm "Add README" && git push -q origin main')
    first.expect("remote: Lessonbot: ✅ Step 1 passed (+20)")
    first.quit()

    again = LiveChat(_demo_args(tmp_path, "--language", "en"), env, tty=True)  # another free port this time
    resumed = again.expect(f"`$` runs in {tmp_path / 'demo' / folder} now")
    assert "Welcome back to “Interactive lesson on Git”: you are at step 2 of 7, with 20 of 100 points" in resumed
    assert "**Step 2 of 7.** Question: which Git command shows the history of commits?" in resumed
    assert f"git clone {clone_url[1]}\n" in resumed and "already in lesson" not in resumed
    again.type("$ git log --format=%s-in-the-clone")
    again.expect("Add README-in-the-clone")
    again.type("git log")
    again.expect("Step 2 passed (+10)")
    again.type("$ git switch -qc feature && git push -q origin feature")
    again.expect("remote: Lessonbot: ✅ Step 3 passed (+15)")  # the hook found this session's port
    again.quit()
