"""Creating hosted bare repositories and running git against them."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from app.git.hook_script import HOOK, PRE_RECEIVE
from app.git.signing import repo_hook_key, repo_password
from app.settings import Settings

GIT_TIMEOUT_SECONDS = 20
DEFAULT_QUOTA_BYTES: int = Settings.model_fields["git_repo_quota_bytes"].default


class GitError(Exception):
    """git failed or timed out."""


def _git_env(repo: Path) -> dict[str, str]:
    """No user config and no prompts: git sees only the repository."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_DIR": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git against a bare repository and collect its output (only for commands whose output is small)."""
    try:
        result = subprocess.run(["git", *args], env=_git_env(repo), capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise GitError(f"git {' '.join(args)} timed out") from error
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result


def git_read(repo: Path, *args: str, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of git's output, and whether that was all of it.

    Repository content is the student's: a file of zeros that is 2 MB on the wire can be
    512 MiB here, so nothing reads it whole. git is stopped once `limit` is passed.
    """
    timed_out = threading.Event()
    with subprocess.Popen(["git", *args], env=_git_env(repo), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as process:
        def stop() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(GIT_TIMEOUT_SECONDS, stop)
        timer.start()
        try:
            assert process.stdout is not None
            data = process.stdout.read(limit + 1)
            complete = len(data) <= limit
            if not complete:
                process.kill()
        finally:
            timer.cancel()
    if timed_out.is_set():
        raise GitError(f"git {' '.join(args)} timed out")
    if complete and process.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed with exit code {process.returncode}")
    return data[:limit], complete


@dataclass(frozen=True)
class HostedRepo:
    name: str
    path: Path
    clone_url: str
    user: str | None = None
    password: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "student"


def template_dir(root: Path) -> Path:
    """Where the repository templates live: beside `root`, never inside it.

    git-http-backend serves everything under `root` (GIT_PROJECT_ROOT), so a template
    there could be named by a crafted path and pushed to, and every later run would
    start from the attacker's commits.
    """
    return root.parent / f"{root.name}-templates"


def _template(root: Path, quota_bytes: int) -> Path:
    """A bare repository with our hooks and no sample hooks, made once per hook version.

    Copying it is much cheaper than `git init` plus `git config` calls for every run. The
    first time a version is built (the first run started after an upgrade), the repositories
    made by earlier versions get the same hooks and settings (`upgrade_repos`).
    """
    version = hashlib.sha256((HOOK + PRE_RECEIVE).encode()).hexdigest()[:12]
    templates = template_dir(root)
    template = templates / f"template-{version}.git"
    if template.is_dir():
        return template
    templates.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=templates))
    result = subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", "--template=", str(building)],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise GitError(f"git init {building}: {result.stderr.strip()}")
    with open(building / "config", "a", encoding="utf-8") as config:
        config.write("[receive]\n\tfsckObjects = true\n")  # a malformed object is refused at push time
    (building / "hooks").mkdir(exist_ok=True)
    for name, script in (("post-receive", HOOK), ("pre-receive", PRE_RECEIVE)):
        hook = building / "hooks" / name
        hook.write_text(script)
        hook.chmod(0o755)
    building.chmod(0o755)
    try:
        building.rename(template)  # atomic: concurrent builders race harmlessly
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        return template  # another process built it, and upgrades the others
    for stale in root.glob(".template-*"):  # where older versions kept it, within reach of git-http-backend
        shutil.rmtree(stale, ignore_errors=True)
    upgrade_repos(root, quota_bytes)
    return template


def upgrade_repos(root: Path, quota_bytes: int) -> int:
    """Give every hosted repository the current hooks, receive.fsckObjects and a quota; how many changed.

    Repositories keep what they were made with otherwise: a run started before the quota
    existed would have no pre-receive hook and could still take a 512 MiB file.
    """
    changed = 0
    for repo in sorted(root.glob("*.git")):
        if not (repo / "config").is_file():
            continue
        touched = False
        for name, script in (("post-receive", HOOK), ("pre-receive", PRE_RECEIVE)):
            hook = repo / "hooks" / name
            if not hook.is_file() or hook.read_text() != script:
                hook.parent.mkdir(exist_ok=True)
                fresh = hook.with_name(f".{name}.{secrets.token_hex(4)}")
                fresh.write_text(script)
                fresh.chmod(0o755)
                fresh.replace(hook)  # atomic: a push running now sees the old hook or the new one
                touched = True
        # Appended as create_repo writes them (no git process per repository: this runs inside a request).
        config = (repo / "config").read_text()
        missing = [section for section, marker in (("[receive]\n\tfsckObjects = true\n", "\tfsckobjects = "),
                                                   (f"[lessonbot]\n\tquota = {quota_bytes}\n", "\tquota = "))
                   if marker not in config.lower()]
        if missing:
            with open(repo / "config", "a", encoding="utf-8") as handle:
                handle.write("".join(missing))
            touched = True
        changed += touched
    return changed


def create_repo(root: Path, lesson_id: str, student_email: str, *, hook_secret: str, hook_url: str,
                public_url: str | None, quota_bytes: int = DEFAULT_QUOTA_BYTES) -> HostedRepo:
    """A fresh bare repository for one run, with the Lessonbot hooks installed.

    Its pre-receive hook refuses pushes past `quota_bytes` of unpacked objects (the value is
    written into the repository's config, so a later change of the setting applies to new runs).
    """
    name = f"{lesson_id}-{_slug(student_email.split('@')[0])}-{secrets.token_hex(4)}"
    repo = hosted_repo(root, name, hook_secret=hook_secret, public_url=public_url)
    template = _template(root, quota_bytes)
    own = (f"[lessonbot]\n\trepo = {name}\n\thookkey = {repo_hook_key(hook_secret, name)}\n"
           f"\thookurl = {hook_url}\n\tquota = {quota_bytes}\n[http]\n\treceivepack = true\n")
    _lay_out(template, repo.path, own)
    return repo


# What a bare repository must have for git to take it as one (HEAD, objects/, refs/) and our hooks;
# git makes refs/heads, objects/pack and the rest itself when it first writes there.
_LAYOUT_DIRECTORIES = ("objects", "refs", "hooks")
_LAYOUT_HOOKS = (("post-receive", HOOK), ("pre-receive", PRE_RECEIVE))


def _lay_out(template: Path, path: Path, own_config: str) -> None:
    """The template's repository at `path`, with `own_config` added to its config.

    Not a copy of the tree: `shutil.copytree` made eight directories and copied times,
    modes and extended attributes file by file, about 3 ms of system time per `start`.
    This makes the four directories git needs and writes HEAD, config and the hooks
    (written, not linked to the template's: a hook edited in place must not change
    every later run's).
    """
    try:
        path.mkdir()
    except FileNotFoundError:  # the first repository: the root is made too
        path.mkdir(parents=True)
    made = [path, *(path / directory for directory in _LAYOUT_DIRECTORIES)]
    for directory in made[1:]:
        directory.mkdir()
    (path / "HEAD").write_bytes((template / "HEAD").read_bytes())
    (path / "config").write_text((template / "config").read_text(encoding="utf-8") + own_config, encoding="utf-8")
    for directory in made:  # as the template has them whatever the umask: git-http-backend reads them
        directory.chmod(0o755)
    for file in ("HEAD", "config"):
        (path / file).chmod(0o644)
    for hook, script in _LAYOUT_HOOKS:
        descriptor = os.open(path / "hooks" / hook, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(script)
        os.chmod(path / "hooks" / hook, 0o755)


def hosted_repo(root: Path, name: str, *, hook_secret: str, public_url: str | None) -> HostedRepo:
    """How a student reaches the hosted repository `name`: by path locally, over HTTPS with its own credentials."""
    path = (root / f"{name}.git").resolve()
    if public_url:
        return HostedRepo(name, path, f"{public_url.rstrip('/')}/{name}.git", "student", repo_password(hook_secret, name))
    return HostedRepo(name, path, str(path))


def repo_path(root: Path, name: str) -> Path | None:
    """The path of a hosted repository by name, or None for names that are not ours."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", name):
        return None
    path = root / f"{name}.git"
    return path if path.is_dir() else None
