"""Attacks on git over HTTPS through the real nginx site, uWSGI core and git-http-backend (issue 9, items 1 and 2)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from app import create_app
from app.db import db
from app.git.hook_script import HOOK
from app.git.repos import create_repo, template_dir
from app.git.signing import repo_hook_key, repo_password, sign
from tests.conftest import SECRETS, make_settings
from tests.git import attacks
from tests.git.attacks import TRAVERSALS, Target
from tests.helpers import ChatStudent, git
from tests.stack import Stack, leftover_processes

REFUSED = {400, 401, 403, 404}


@dataclass
class Account:
    name: str
    password: str
    path: Path


def _account(stack: Stack, who: str) -> Account:
    repo = create_repo(stack.git_root, "git-basics", f"{who}@example.com", hook_secret=stack.hook_secret,
                       hook_url=f"{stack.http_url}/git/hook", public_url=stack.git_url)
    assert repo.password is not None
    return Account(repo.name, repo.password, repo.path)


def _snapshot(bare: Path) -> str:
    """Refs and every object of a bare repository: any push into it changes this."""
    refs = git(bare, "--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)")
    objects = git(bare, "--git-dir", str(bare), "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return refs + objects


@pytest.fixture(scope="module")
def target(stack: Stack) -> Target:
    return Target(stack.git_url, stack.cafile)


@pytest.fixture
def victim(stack: Stack, target: Target, tmp_path: Path) -> Account:
    """Student B, whose repository holds one commit with a secret in it."""
    victim = _account(stack, "victim")
    work, _ = attacks.new_work_tree(target, tmp_path / "victim-work", "victim-secret")
    pushed = attacks.push(target, work, f"{victim.name}.git", "student", victim.password)
    assert pushed.returncode == 0, pushed.stderr
    return victim


@pytest.fixture
def attacker(stack: Stack) -> Account:
    return _account(stack, "attacker")


def test_a_student_clones_and_pushes_their_own_repository(target: Target, attacker: Account, tmp_path: Path) -> None:
    work, commit = attacks.new_work_tree(target, tmp_path / "work", "mine")
    pushed = attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password)
    assert pushed.returncode == 0, pushed.stderr
    cloned = attacks.clone(target, f"{attacker.name}.git", "student", attacker.password, tmp_path / "clone")
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "clone" / "attack.txt").read_text() == "mine\n"
    assert git(attacker.path, "--git-dir", str(attacker.path), "rev-parse", "main").strip() == commit


def test_a_wrong_password_or_another_repository_is_refused(target: Target, attacker: Account, victim: Account,
                                                           tmp_path: Path) -> None:
    assert attacks.raw_refs(target, f"{attacker.name}.git", "student", "wrong")[0] == 401
    assert attacks.raw_refs(target, f"{victim.name}.git", "student", attacker.password)[0] == 401
    cloned = attacks.clone(target, f"{victim.name}.git", "student", attacker.password, tmp_path / "clone")
    assert cloned.returncode != 0


@pytest.mark.parametrize("traversal", sorted(TRAVERSALS))
def test_a_path_through_the_own_repository_does_not_reach_another(target: Target, attacker: Account, victim: Account,
                                                                  tmp_path: Path, traversal: str) -> None:
    path = TRAVERSALS[traversal].format(a=attacker.name, b=victim.name)
    before = _snapshot(victim.path)

    status, body = attacks.raw_refs(target, path, "student", attacker.password)
    assert status in REFUSED and b"refs/heads/main" not in body, (status, body[:200])
    status, _ = attacks.raw_refs(target, path, "student", attacker.password, service="git-receive-pack")
    assert status in REFUSED
    cloned = attacks.clone(target, path, "student", attacker.password, tmp_path / "stolen")
    assert cloned.returncode != 0 and not (tmp_path / "stolen" / "attack.txt").exists()

    work, commit = attacks.new_work_tree(target, tmp_path / "work", "attacker-was-here")
    status, _ = attacks.raw_push(target, path, "student", attacker.password, work, commit, ref="refs/heads/pwned")
    assert status in REFUSED
    assert attacks.push(target, work, path, "student", attacker.password, "HEAD:refs/heads/pwned2").returncode != 0
    assert _snapshot(victim.path) == before


def _template_paths(stack: Stack, attacker: Account) -> list[str]:
    """Every way to name a template from the attacker's repository: where it used to be, and where it is."""
    old_name = f".template-{hashlib.sha256(HOOK.encode()).hexdigest()[:12]}.git"
    current = template_dir(stack.git_root)
    up_from_root = "/".join([".."] * 1) + f"/{current.name}"
    names = [old_name, f"{up_from_root}/{old_name}"]
    return [pattern.format(a=attacker.name, b=name.removesuffix(".git"))
            for name in names for pattern in (TRAVERSALS["percent-dot"], TRAVERSALS["dot-dot"])]


def test_the_template_is_out_of_reach_and_new_repositories_start_empty(stack: Stack, target: Target, attacker: Account,
                                                                        tmp_path: Path) -> None:
    template = template_dir(stack.git_root)
    assert stack.git_root.resolve() not in template.resolve().parents  # git-http-backend cannot name it
    work, commit = attacks.new_work_tree(target, tmp_path / "work", "poison")
    for path in _template_paths(stack, attacker):
        status, _ = attacks.raw_push(target, path, "student", attacker.password, work, commit)
        assert status in REFUSED, path
        assert attacks.push(target, work, path, "student", attacker.password).returncode != 0
    fresh = _account(stack, "next-student")
    assert git(fresh.path, "--git-dir", str(fresh.path), "for-each-ref").strip() == ""


@pytest.mark.parametrize("made", ["now", "before-the-fix"])
def test_a_malformed_object_is_refused_at_push_time(target: Target, attacker: Account, tmp_path: Path,
                                                    made: str) -> None:
    """receive.fsckObjects: in each new repository's config, and from nginx for repositories made earlier."""
    config = ["--git-dir", str(attacker.path), "config"]
    assert git(attacker.path, *config, "--get", "receive.fsckObjects").strip() == "true"
    if made == "before-the-fix":
        git(attacker.path, *config, "--unset", "receive.fsckObjects")
    before = _snapshot(attacker.path)
    work, commit = attacks.malformed_commit(target, tmp_path / "work")
    pushed = attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password, f"{commit}:refs/heads/main")
    assert pushed.returncode != 0 and "missingEmail" in pushed.stderr
    assert _snapshot(attacker.path) == before


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def _busy_git_processes(stack: Stack, seconds: float = 1.0) -> list[str]:
    """git processes of the stack that used more than half a CPU over `seconds`."""
    before = {pid: (_cpu_seconds(pid), command) for pid, command in leftover_processes(stack.root) if "git" in command}
    time.sleep(seconds)
    return [command for pid, (used, command) in before.items() if _cpu_seconds(pid) - used > seconds / 2]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_half_sent_pushes_do_not_freeze_git_hosting(stack: Stack, target: Target, attacker: Account,
                                                     tmp_path: Path, chunked: bool) -> None:
    work, _ = attacks.new_work_tree(target, tmp_path / "work", "before")
    assert attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password).returncode == 0
    attacks.half_sent_pushes(target, attacker.name, "student", attacker.password, count=6, chunked=chunked)
    time.sleep(1)
    seconds, cloned = attacks.timed_clone(target, attacker.name, "student", attacker.password, tmp_path / "clone",
                                          timeout=20)
    assert cloned is not None and cloned.returncode == 0, f"no clone after {seconds:.1f} s"
    assert seconds < 10
    assert _busy_git_processes(stack) == []


def test_every_uwsgi_worker_refuses_a_replayed_hook_event(stack: Stack, attacker: Account) -> None:
    """The same signed event sent at once to several uWSGI processes is acted on once (item 4)."""
    body = json.dumps({"repo": attacker.name, "refs": []}).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Lessonbot-Repo": attacker.name, "X-Lessonbot-Timestamp": stamp,
               "X-Lessonbot-Signature": sign(repo_hook_key(stack.hook_secret, attacker.name), stamp, body)}

    def send(_: int) -> int:
        try:
            with urlopen(Request(f"{stack.http_url}/git/hook", data=body, headers=headers), timeout=30) as response:
                return int(response.status)
        except HTTPError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    # No run uses this repository, so the one accepted event is a 404; every replay is a 401.
    assert statuses == [401] * 7 + [404]


def test_a_push_over_the_quota_is_refused_with_a_clear_message(target: Target, attacker: Account,
                                                               tmp_path: Path) -> None:
    """64 MiB of zeros packs to a few hundred KiB but is over the 32 MiB quota once unpacked (item 3)."""
    work, _ = attacks.new_work_tree(target, tmp_path / "work", "small")
    assert attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password).returncode == 0
    before = _snapshot(attacker.path)
    attacks.zeros_push(target, work, 64 * 1024 * 1024)
    pushed = attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password)
    assert pushed.returncode != 0
    assert "remote: Lessonbot: push refused: the repository would hold 64.0 MiB, more than its quota of 32.0 MiB" \
        in pushed.stderr
    assert _snapshot(attacker.path) == before  # the refused objects are not kept either


def test_a_large_push_within_the_quota_goes_through_nginx_buffering(target: Target, attacker: Account,
                                                                    tmp_path: Path) -> None:
    """Bigger than git's 1 MiB post buffer, so git sends it chunked; nginx buffers it whole for git-http-backend."""
    work, _ = attacks.new_work_tree(target, tmp_path / "work", "big")
    commit = attacks.commit(target, work, "data.bin", os.urandom(6 * 1024 * 1024), "six random MiB")
    pushed = attacks.push(target, work, f"{attacker.name}.git", "student", attacker.password)
    assert pushed.returncode == 0, pushed.stderr
    assert git(attacker.path, "--git-dir", str(attacker.path), "rev-parse", "main").strip() == commit


def _uwsgi_peak_rss(stack: Stack) -> int:
    """The largest peak resident size (VmHWM) among the stack's uWSGI processes, in bytes."""
    peaks = []
    for pid, command in leftover_processes(stack.root):
        if "uwsgi" in command:
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024)
    return max(peaks)


def test_a_huge_file_that_packs_small_does_not_grow_the_core(stack: Stack, target: Target, database_url: str,
                                                             tmp_path: Path) -> None:
    """The real path of item 3: push → post-receive hook → /git/hook under uWSGI → the step check on the file."""
    settings = make_settings(database_url, stack.git_root, git_public_url=stack.git_url, default_language="en",
                             hook_url=f"{stack.http_url}/git/hook", git_repo_quota_bytes=256 * 1024 * 1024)
    app = create_app(settings, TESTING=True)
    with app.app_context():
        student = ChatStudent(app.test_client(), f"zeros-{time.time_ns()}@example.com", tmp_path)
        student.say("start git-basics")
        run = student.run()
        assert run is not None
        name = str(run.context["repo_name"])
        db.session.remove()
        db.engine.dispose()
    password = repo_password(SECRETS["git_hook_secret"], name)
    work = tmp_path / "work"
    assert attacks.clone(target, f"{name}.git", "student", password, work).returncode == 0
    attacks.zeros_push(target, work, 64 * 1024 * 1024)
    peak_before = _uwsgi_peak_rss(stack)
    pushed = attacks.push(target, work, f"{name}.git", "student", password)
    assert pushed.returncode == 0, pushed.stderr
    assert "Lessonbot: ✅ Step 1 passed" in pushed.stderr  # the hook reached the core and the check ran
    grown = _uwsgi_peak_rss(stack) - peak_before
    print(f"uWSGI peak RSS grew by {grown / 2**20:.1f} MiB")
    assert grown < 16 * 1024 * 1024, f"uWSGI grew by {grown / 2**20:.0f} MiB"


def test_a_push_body_over_the_limit_is_refused_before_it_is_read(target: Target, attacker: Account) -> None:
    assert attacks.declared_push_status(target, attacker.name, "student", attacker.password, 80 * 1024 * 1024) == 413


def test_repository_names_cannot_be_probed(target: Target, victim: Account, stack: Stack) -> None:
    """A wrong password gets the same 401 and the same sentence whether the repository exists or not."""
    existing = attacks.raw_refs(target, f"{victim.name}.git", "student", "guess")
    missing = attacks.raw_refs(target, "git-basics-nobody-0123456789ab.git", "student", "guess")
    assert existing[0] == missing[0] == 401
    assert existing[1] == missing[1]
    # The repository's own password still opens it, and names a repository that is gone.
    assert attacks.raw_refs(target, f"{victim.name}.git", "student", victim.password)[0] == 200
    gone = "git-basics-gone-0123456789ab"
    password = repo_password(stack.hook_secret, gone)
    assert attacks.raw_refs(target, f"{gone}.git", "student", password)[0] == 403
