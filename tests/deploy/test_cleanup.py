"""A deploy run killed with SIGKILL leaves no machine, pebble, namespace or nft table after the sweep.

The issue: runs stopped by a CI timeout left pebble servers, a booted nspawn
machine, its network namespace and its nft table behind. Here a child process
starts the deploy test's environment (network, pebble, the Zulip relay, the
booted machine), is SIGKILLed, and the sweep that every test session starts
with must leave nothing of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import lifetime
from tests.deploy import machine

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]

CHILD = """
import json, sys, time
from pathlib import Path

from tests.deploy import machine
from tests.lifetime import write_whole

environment = machine.TestEnvironment(workdir=Path(sys.argv[1]))
environment.start()
write_whole(Path(sys.argv[2]), {"root": str(environment.machine.root)})
time.sleep(600)
"""


@pytest.fixture
def runs() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lb-runs-"))
    yield path
    lifetime.sweep_dead(path)
    shutil.rmtree(path, ignore_errors=True)


def _netns_exists() -> bool:
    return Path(f"/run/netns/{machine.NETNS}").exists()


def _nft_table_exists() -> bool:
    return machine.run("nft", "list", "table", "ip", machine.NFT_TABLE, check=False).returncode == 0


def _pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _in_pid_namespace(namespace: str) -> list[int]:
    """Processes in `namespace`: what runs inside the machine."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if _pid_namespace(pid) == namespace]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def test_killed_deploy_environment_leaves_nothing_after_the_sweep(runs: Path, tmp_path: Path) -> None:
    missing = [tool for tool in ("systemd-nspawn", "pebble", "nft", "ssh") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"needs root and tests/deploy/host-setup.sh (missing: {missing or 'root'})", pytrace=False)
    machine.cached_rootfs()  # built (minutes) at most once; not part of what is measured here
    ready = tmp_path / "ready.json"
    env = {**os.environ, "LESSONBOT_TEST_RUNS_DIR": str(runs)}
    child = lifetime.popen([sys.executable, "-c", CHILD, str(tmp_path / "environment"), str(ready)], cwd=machine.REPO_ROOT,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    child_start = lifetime.start_time(child.pid)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the environment did not start"
            time.sleep(0.2)
        root = Path(json.loads(ready.read_text())["root"])
        tree = lifetime.descendants(child.pid)
        tied = [(pid, started) for pid, started in tree if pid in lifetime.children(child.pid)]
        commands = {pid: _command(pid) for pid, _ in tree}
        assert {"pebble", "pebble-challtestsrv", "systemd-nspawn"} <= {Path(c).name for c in commands.values()}
        inside = {_pid_namespace(pid) for pid, _ in tree} - {_pid_namespace(os.getpid())}
        assert len(inside) == 1, "the machine is not running"
        machine_namespace = inside.pop()
        assert _netns_exists() and _nft_table_exists()
    finally:
        child.kill()
        child.wait()

    # Its children (pebble, its DNS, the Zulip server, nspawn) die with it by themselves ...
    deadline = time.monotonic() + 5
    while any(lifetime.running(*process) for process in tied) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [commands[pid] for pid, started in tied if lifetime.running(pid, started)] == []
    # ... but namespaces, nft tables and directories cannot: only the sweep removes them.
    assert _netns_exists() and _nft_table_exists() and root.is_dir()
    swept = lifetime.sweep_dead(runs)

    assert swept == [runs / f"{child.pid}-{child_start}"]
    assert [(pid, commands[pid]) for pid, started in tree if lifetime.running(pid, started)] == []
    assert _in_pid_namespace(machine_namespace) == [], "processes of the machine still run"
    assert not _netns_exists(), "the network namespace is still there"
    assert not _nft_table_exists(), "the nft table is still there"
    assert not Path(f"/sys/class/net/{machine.VETH_HOST}").exists(), "the veth link is still there"
    assert not root.exists(), "the machine's root copy is still there"
    assert sorted(runs.iterdir()) == []


def test_make_vm_machine_outlives_its_script_is_never_swept_and_deploy_tests_refuse_beside_it(runs: Path) -> None:
    """`make vm` leaves its machine up on purpose: sessions must not sweep it, deploy tests must not tear it down."""
    if os.geteuid() != 0:
        pytest.fail("needs root and tests/deploy/host-setup.sh", pytrace=False)
    machine.cached_rootfs()
    env = {**os.environ, "LESSONBOT_TEST_RUNS_DIR": str(runs)}
    vm = [sys.executable, str(machine.REPO_ROOT / "tests/deploy/vm.py")]
    processes: list[tuple[int, int]] = []
    try:
        started = lifetime.run(vm, env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        record = lifetime.Record(runs / machine.VM_RECORD)
        processes = [(int(entry["name"]), int(entry["start"])) for entry in record.entries() if entry["kind"] == "process"]
        assert processes and all(lifetime.running(*process) for process in processes), "the machine did not outlive vm.py"

        assert lifetime.sweep_dead(runs) == []
        assert all(lifetime.running(*process) for process in processes) and _netns_exists()

        refused = lifetime.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/deploy/test_deploy.py"],
                               cwd=machine.REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert machine.VM_BUSY in refused.stdout + refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
        assert all(lifetime.running(*process) for process in processes) and _netns_exists()
    finally:
        stopped = lifetime.run([*vm, "--stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [process for process in processes if lifetime.running(*process)] == []
    assert not _netns_exists() and not _nft_table_exists()
    assert sorted(runs.iterdir()) == []
