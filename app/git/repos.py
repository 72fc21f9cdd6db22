"""Creating hosted bare repositories and running git against them."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.git.hook_script import HOOK
from app.git.signing import repo_hook_key, repo_password

GIT_TIMEOUT_SECONDS = 20


class GitError(Exception):
    """git failed or timed out."""


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git against a bare repository, with no user config and no prompts."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_DIR": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    try:
        result = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise GitError(f"git {' '.join(args)} timed out") from error
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class HostedRepo:
    name: str
    path: Path
    clone_url: str
    user: str | None = None
    password: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "student"


def _template(root: Path) -> Path:
    """A bare repository with our hook and no sample hooks, made once per hook version.

    Copying it is much cheaper than `git init` plus `git config` calls for every run.
    """
    version = hashlib.sha256(HOOK.encode()).hexdigest()[:12]
    template = root / f".template-{version}.git"
    if template.is_dir():
        return template
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".template-", dir=root))
    result = subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", "--template=", str(building)],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise GitError(f"git init {building}: {result.stderr.strip()}")
    hook = building / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    building.chmod(0o755)
    try:
        building.rename(template)  # atomic: concurrent builders race harmlessly
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return template


def create_repo(root: Path, lesson_id: str, student_email: str, *, hook_secret: str, hook_url: str,
                public_url: str | None) -> HostedRepo:
    """A fresh bare repository for one run, with the Lessonbot hook installed."""
    name = f"{lesson_id}-{_slug(student_email.split('@')[0])}-{secrets.token_hex(4)}"
    path = (root / f"{name}.git").resolve()
    shutil.copytree(_template(root), path, symlinks=True)
    with open(path / "config", "a", encoding="utf-8") as config:
        config.write(f"[lessonbot]\n\trepo = {name}\n\thookkey = {repo_hook_key(hook_secret, name)}\n"
                     f"\thookurl = {hook_url}\n[http]\n\treceivepack = true\n")
    if public_url:
        return HostedRepo(name, path, f"{public_url.rstrip('/')}/{name}.git", "student", repo_password(hook_secret, name))
    return HostedRepo(name, path, str(path))


def repo_path(root: Path, name: str) -> Path | None:
    """The path of a hosted repository by name, or None for names that are not ours."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", name):
        return None
    path = root / f"{name}.git"
    return path if path.is_dir() else None
