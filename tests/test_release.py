"""What a release ships (roles/app/files/build_release.py) and how its packages are pinned.

build_release.py runs on the operator's machine, inside their checkout, next to
files that must never reach the server (a decrypted vault, a local .env): a
release holds the tracked files only, owned by root with modes the app user can
read but not change. The lock files pin every package the virtualenvs get,
transitive ones included, with hashes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_RELEASE = REPO_ROOT / "roles/app/files/build_release.py"

TRACKED = {
    "requirements.txt": ("Flask==3.1.3\n", 0o644),
    "requirements.lock": ("flask==3.1.3 \\\n    --hash=sha256:" + "0" * 64 + "\n", 0o644),
    "manage.py": ("#!/usr/bin/env python3\n", 0o775),
    # Private on the operator's machine, yet the app user must read it on the server.
    "app/__init__.py": ("VERSION = 1\n", 0o600),
    # Group- and world-writable locally: must not stay so on the server.
    "app/lessons/files/git-basics.yml": ("id: git-basics\n", 0o666),
    ".gitignore": (".env\n", 0o644),
}
UNTRACKED = {
    # Not ignored: `git ls-files --others --exclude-standard` listed it.
    "inventory/group_vars/all/vault.plain.yml": "vault_lessonbot_secret_key: not-for-the-server\n",
    # Ignored.
    ".env": "LESSONBOT_SECRET_KEY=local-only\n",
    # A scratch file beside the code.
    "app/notes.txt": "draft\n",
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small checkout: tracked files with odd local modes, untracked files beside them."""
    source = tmp_path / "checkout"
    for name, (text, mode) in TRACKED.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    git("init", "-q", cwd=source)
    git("add", *TRACKED, cwd=source)
    git("-c", "user.name=Test", "-c", "user.email=test@example.org", "commit", "-qm", "release", cwd=source)
    for name, text in UNTRACKED.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return source


def build(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """Run build_release.py the way the app role does."""
    return subprocess.run(
        [sys.executable, str(BUILD_RELEASE), "--source", str(source), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def archive_members(result: subprocess.CompletedProcess[str]) -> dict[str, tarfile.TarInfo]:
    assert result.returncode == 0, result.stderr
    archive = Path(json.loads(result.stdout)["archive"])
    with tarfile.open(archive) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_release_ships_tracked_files_only(checkout: Path, tmp_path: Path) -> None:
    members = archive_members(build(checkout, tmp_path / "out"))
    assert set(members) == set(TRACKED)
    assert "inventory/group_vars/all/vault.plain.yml" not in members


def test_release_ships_the_working_tree_content_of_tracked_files(checkout: Path, tmp_path: Path) -> None:
    (checkout / "app/__init__.py").write_text("VERSION = 2\n")
    result = build(checkout, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with tarfile.open(json.loads(result.stdout)["archive"]) as tar:
        extracted = tar.extractfile("app/__init__.py")
        assert extracted is not None
        assert extracted.read() == b"VERSION = 2\n"


def test_release_files_are_root_owned_and_readable_but_not_writable_by_others(checkout: Path, tmp_path: Path) -> None:
    members = archive_members(build(checkout, tmp_path / "out"))
    modes = {name: member.mode for name, member in members.items()}
    assert modes == {
        "requirements.txt": 0o644,
        "requirements.lock": 0o644,
        "manage.py": 0o755,
        "app/__init__.py": 0o644,
        "app/lessons/files/git-basics.yml": 0o644,
        ".gitignore": 0o644,
    }
    assert {(member.uid, member.gid, member.uname, member.gname) for member in members.values()} == {(0, 0, "root", "root")}


def test_an_untracked_file_changes_neither_the_archive_nor_its_hash(checkout: Path, tmp_path: Path) -> None:
    before = build(checkout, tmp_path / "first")
    (checkout / "inventory/group_vars/all/vault.plain.yml").write_text("changed\n")
    (checkout / "stray.py").write_text("print('not shipped')\n")
    after = build(checkout, tmp_path / "second")
    assert json.loads(before.stdout)["hash"] == json.loads(after.stdout)["hash"]
    assert Path(json.loads(before.stdout)["archive"]).read_bytes() == Path(json.loads(after.stdout)["archive"]).read_bytes()


def test_a_directory_that_is_not_a_checkout_is_refused_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    (source / "requirements.lock").write_text("")
    (source / "vault.plain.yml").write_text("secret\n")
    result = build(source, tmp_path / "out")
    assert result.returncode == 1
    assert "not a git checkout" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


# --- the lock files ---------------------------------------------------------

LOCKS = {
    "requirements.lock": "requirements.txt",
    "requirements-dev.lock": "requirements-dev.txt",
    "requirements-deploy.lock": "requirements-deploy.txt",
}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")  # extras kept: name[extra]==v


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(lock: Path) -> dict[str, tuple[str, int]]:
    """Package -> (version, number of hashes) from a `uv pip compile --generate-hashes` file."""
    entries: dict[str, tuple[str, int]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        if match := REQUIREMENT.match(line):
            current = normalized(match.group(1))
            assert line.endswith("\\"), f"{lock.name}: {line!r} has no hashes"
            entries[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{lock.name}: unexpected line {line!r} (an unpinned requirement or an option)")
    return entries


def input_pins(requirements: Path) -> dict[str, str]:
    """The `name==version` lines of an input file and of the files it includes (-r)."""
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        if line.startswith("-r "):
            pins |= input_pins(requirements.parent / line.split(maxsplit=1)[1])
        elif match := REQUIREMENT.match(line):
            pins[normalized(match.group(1))] = match.group(2)
    return pins


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_package_is_pinned_with_hashes(lock: str) -> None:
    entries = lock_entries(REPO_ROOT / lock)
    assert entries
    assert [name for name, (_, hashes) in entries.items() if hashes == 0] == []


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_matches_its_inputs(lock: str) -> None:
    # An input edited without `make pins` would otherwise deploy the old version.
    entries = lock_entries(REPO_ROOT / lock)
    pins = input_pins(REPO_ROOT / LOCKS[lock])
    stale = {name: (version, entries.get(name, ("missing", 0))[0]) for name, version in pins.items()
             if entries.get(name, ("", 0))[0] != version}
    assert stale == {}, f"run `make pins`: {stale}"


def test_tests_and_deployment_use_the_versions_production_runs() -> None:
    runtime = lock_entries(REPO_ROOT / "requirements.lock")
    for other in ("requirements-dev.lock", "requirements-deploy.lock"):
        entries = lock_entries(REPO_ROOT / other)
        differing = {name: (version, entries[name][0]) for name, (version, _) in runtime.items()
                     if name in entries and entries[name][0] != version}
        assert differing == {}, other
    assert set(runtime) <= set(lock_entries(REPO_ROOT / "requirements-dev.lock"))


def _make_plan(target: str, venv: Path) -> str:
    """What `make TARGET` would run with this virtualenv (make -n: nothing runs)."""
    return subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout


def _installs(plan: str) -> list[str]:
    return [Path(lock).name for lock in re.findall(r"pip install --quiet --require-hashes -r (\S+)", plan)]


def _locked_names(lock: str) -> set[str]:
    return set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+ \\$", lock, re.MULTILINE))


def test_demo_installs_the_runtime_lock_but_uwsgi_and_the_tests_the_dev_lock(tmp_path: Path) -> None:
    """A newcomer's first `make demo` waits neither for the toolchain (ansible, mypy, …) nor for a uWSGI build."""
    venv = tmp_path / "venv"
    plan = _make_plan("demo", venv)
    assert _installs(plan) == ["requirements-demo.lock"]
    [write_lock] = [line for line in plan.splitlines() if "requirements-demo.lock" in line and "pip" not in line]
    venv.mkdir()
    subprocess.run(["bash", "-c", write_lock], cwd=REPO_ROOT, check=True, timeout=60)
    demo_lock = (venv / "requirements-demo.lock").read_text()
    runtime = (REPO_ROOT / "requirements.lock").read_text()
    assert _locked_names(demo_lock) == _locked_names(runtime) - {"uwsgi"} and "uwsgi" in _locked_names(runtime)
    assert demo_lock.count("--hash=sha256:") == runtime.count("--hash=sha256:") - 1  # every other hash kept
    assert _installs(_make_plan("test-fast", venv)) == ["requirements-dev.lock"]

    (venv / ".installed-runtime").touch()  # after a demo: the tests still get their tools, a rerun installs nothing
    assert _installs(_make_plan("test-fast", venv)) == ["requirements-dev.lock"]
    assert _installs(_make_plan("demo", venv)) == []
