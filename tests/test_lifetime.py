"""A killed test run leaves nothing running, and the next session removes what it left on disk.

The issue: four `make test` runs stopped by a CI timeout (SIGKILL) left four
PostgreSQL clusters and four Zulip test servers behind. Here a child pytest
session starts both (through the same fixtures' classes the suite uses), its
parent shell is SIGKILLed the way a CI runner kills `make`, and then nothing of
it may run; the next session's sweep must remove its record and directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import lifetime

REPO = Path(__file__).resolve().parents[1]

CHILD_TEST = """
import os, time
from pathlib import Path

from tests.pg import PgCluster
from tests.lifetime import write_whole
from tests.zulip_server.spawn import SpawnedZulipTestServer


def test_hold_servers_until_killed():
    cluster = PgCluster().start()
    zulip = SpawnedZulipTestServer().start()
    ready = {"postgres": cluster.process.pid, "zulip": zulip.pid, "record": str(cluster.record.path)}
    write_whole(Path(os.environ["LIFETIME_READY"]), ready)
    time.sleep(300)
"""

NEXT_SESSION_TEST = "def test_nothing():\n    pass\n"


@pytest.fixture
def runs() -> Iterator[Path]:
    """A runs directory of its own, so that only this test's records are in play.

    Short on purpose: PostgreSQL's socket path inside it must fit in 107 bytes.
    """
    path = Path(tempfile.mkdtemp(prefix="lb-runs-"))
    yield path
    lifetime.sweep_dead(path)
    shutil.rmtree(path, ignore_errors=True)


def _pytest_command(test_file: Path) -> list[str]:
    # The tests' own conftest as a plugin: its hooks (die with the parent, sweep) are what is tested.
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(test_file)]


def _mentioning(*texts: str) -> list[str]:
    """Command lines of running processes that mention any of `texts`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and lifetime.start_time(int(entry.name)) is not None:
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(text in command for text in texts):
                found.append(f"{entry.name}: {command}")
    return found


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the child session ended before its servers were up"
        assert time.monotonic() < deadline, f"the child session's servers were not up within {timeout:g} s"
        time.sleep(0.05)
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize(
    ("kill", "moment"),
    [("shell", "while starting"), ("shell", "while serving"), ("process group", "while serving")],
)
def test_killed_run_leaves_no_server_and_the_next_session_sweeps_its_record(
    kill: str, moment: str, runs: Path, tmp_path: Path
) -> None:
    child_test, ready = tmp_path / "test_child.py", tmp_path / "ready.json"
    child_test.write_text(CHILD_TEST)
    env = {**os.environ, "LESSONBOT_TEST_RUNS_DIR": str(runs), "LIFETIME_READY": str(ready)}
    env.pop("PYTEST_CURRENT_TEST", None)
    # `make` stand-in: a shell that does not exec pytest (the `; echo` keeps it), leading its own process group.
    shell = lifetime.popen(["sh", "-c", '"$@"; echo pytest ended', "sh", *_pytest_command(child_test)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if moment == "while serving":
            started = _wait_for(ready, shell, timeout=120)
            time.sleep(random.uniform(0, 1))
        else:
            time.sleep(random.uniform(0.5, 5))  # imports, initdb or the Zulip server's start
            started = {}
        tree = lifetime.descendants(shell.pid)
        if kill == "shell":
            shell.kill()
        else:
            os.killpg(shell.pid, signal.SIGKILL)
    finally:
        shell.kill()
        shell.wait()

    deadline = time.monotonic() + 5
    while ([p for p in tree if lifetime.running(*p)] or _mentioning(str(runs), str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in tree if lifetime.running(*p)] == [], "processes of the killed run still run"
    assert _mentioning(str(runs), str(tmp_path)) == []
    if started:
        assert Path(str(started["record"])).is_dir(), "the killed run had no chance to remove its record"

    next_test = tmp_path / "test_next.py"
    next_test.write_text(NEXT_SESSION_TEST)
    result = subprocess.run(_pytest_command(next_test), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(runs.iterdir()) == [], "the next session's sweep left records behind"
    if started:
        assert f"swept what 1 killed test run(s) left: {Path(str(started['record'])).name}" in result.stdout


def _finished_process() -> tuple[int, int]:
    """(pid, start time) of a process that has ended: a dead owner."""
    process = subprocess.Popen(["sleep", "60"])
    started = lifetime.start_time(process.pid)
    assert started is not None
    process.kill()
    process.wait()
    return process.pid, started


def test_sweep_leaves_the_record_of_a_running_owner_alone(runs: Path, tmp_path: Path) -> None:
    owner = lifetime.popen(["sleep", "60"])
    worker = lifetime.popen(["sleep", "60"])
    try:
        owner_start, worker_start = lifetime.start_time(owner.pid), lifetime.start_time(worker.pid)
        assert owner_start is not None and worker_start is not None
        record = lifetime.Record(runs / f"{owner.pid}-{owner_start}")
        record.add_process(worker.pid)
        kept = tmp_path / "kept"
        kept.mkdir()
        record.add_tree(kept)

        assert lifetime.sweep_dead(runs) == []
        assert lifetime.running(worker.pid, worker_start) and kept.is_dir() and record.path.is_dir()

        owner.kill()
        owner.wait()
        assert lifetime.sweep_dead(runs) == [record.path]
        worker.wait(timeout=5)
        assert not kept.exists() and not record.path.exists()
    finally:
        for process in (owner, worker):
            process.kill()
            process.wait()


def test_sweep_spares_what_was_created_again_under_the_same_name(runs: Path, tmp_path: Path) -> None:
    """A reused pid, or a directory made again by a later run, is not the dead owner's to remove."""
    pid, started = _finished_process()
    record = lifetime.Record(runs / f"{pid}-{started}")
    again = tmp_path / "machine-root"
    again.mkdir()
    record.add_tree(again)
    shutil.rmtree(again)
    again.mkdir()  # a later run's directory under the same path
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        stranger_start = lifetime.start_time(stranger.pid)
        assert stranger_start is not None
        # As if the recorded process had ended and its pid been given to this one.
        (record.path / "process-reused.json").write_text(
            json.dumps({"kind": "process", "name": str(stranger.pid), "start": stranger_start - 1})
        )

        assert lifetime.sweep_dead(runs) == [record.path]
        assert lifetime.running(stranger.pid, stranger_start)
        assert again.is_dir()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_child_started_from_a_short_lived_thread_outlives_that_thread() -> None:
    """PDEATHSIG follows the parent *thread*: a worker restarted from a helper thread must not die with it."""
    started: list[subprocess.Popen[bytes]] = []
    helper = threading.Thread(target=lambda: started.append(lifetime.popen(["sleep", "30"])))
    helper.start()
    helper.join()
    [child] = started
    time.sleep(0.5)
    try:
        assert child.poll() is None, "the child died with the thread that started it"
    finally:
        child.kill()
        child.wait()


def test_the_sweep_ends_what_a_dead_group_leader_left_running(runs: Path) -> None:
    """A wrapper that leads its own group (timeout(1) does) is killed with the run; the command under it
    is not: the sweep ends the rest of the group. (A git-http-backend left like this spun at 100 % CPU.)"""
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; read line"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert leader.stdout is not None and leader.stdin is not None
    orphan = int(leader.stdout.readline())
    record = lifetime.Record(runs / "999999-1")  # an owner long gone
    record.add_process(leader.pid)
    assert len(record.entries()) == 1
    leader.stdin.close()  # the leader ends; its background sleep stays in its group
    leader.wait()
    orphan_start = lifetime.start_time(orphan)
    try:
        assert orphan_start is not None and os.getpgid(orphan) == leader.pid  # the leader is gone, its group is not
        assert lifetime.sweep_dead(runs) == [record.path]
        deadline = time.monotonic() + 5
        while lifetime.running(orphan, orphan_start) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lifetime.running(orphan, orphan_start)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
