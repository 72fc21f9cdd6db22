"""The git.* checks: they read the run's hosted bare repository itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from flask import has_app_context
from pydantic import AfterValidator, Field, StringConstraints, field_validator

from app import current
from app.git.repos import GitError, git, git_read
from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_error, check_type, not_yet
from app.settings import Settings


def _git_ref_name(value: str) -> str:
    """A branch or tag name git accepts (``git check-ref-format`` rules), so ``../../x`` is not one."""
    parts = value.split("/")
    if any(not part or part.startswith(".") or part.endswith(".lock") for part in parts) or ".." in value \
            or value.endswith("."):
        raise ValueError(f"{value!r} is not a git branch or tag name (no empty parts, '..', leading '.' or '.lock')")
    return value


RefName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/-]+$"),
                    AfterValidator(_git_ref_name)]


def _repo(context: CheckContext) -> Path | None:
    """The run's repository, if it is there and git can read it (a broken one is an error, not 'not yet')."""
    path = context.run_context.get("repo_path")
    if not path or not Path(path).is_dir():
        return None
    if git(Path(path), "rev-parse", "--is-bare-repository", check=False).returncode != 0:
        return None
    return Path(path)


def _read_limit() -> int:
    """LESSONBOT_GIT_CHECK_READ_BYTES of the running app (its default where checks run outside one, as in tests)."""
    if has_app_context():
        return current.settings().git_check_read_bytes
    default: int = Settings.model_fields["git_check_read_bytes"].default
    return default


def _has_ref(repo: Path, ref: str) -> bool:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode == 0


def _is_empty(repo: Path) -> bool:
    return git(repo, "for-each-ref", "--count=1", "refs/heads", check=False).stdout.strip() == ""


class CommitParams(CheckParams):
    branch: RefName = "main"
    min_commits: int = Field(default=1, ge=1)
    message_contains: str | None = None


@check_type("git.commit_exists", CommitParams)
def commit_exists(params: CommitParams, context: CheckContext) -> CheckResult:
    repo = _repo(context)
    if repo is None:
        return check_error("git.unavailable")
    if _is_empty(repo):
        return not_yet("git.empty_repo")
    ref = f"refs/heads/{params.branch}"
    if not _has_ref(repo, ref):
        return not_yet("git.no_branch", branch=params.branch)
    count = int(git(repo, "rev-list", "--count", ref).stdout.strip() or 0)
    if count < params.min_commits:
        return not_yet("git.few_commits", branch=params.branch, count=count, min=params.min_commits)
    if params.message_contains:
        # The newest messages first, up to the read limit: a huge message cannot make the check read it all.
        messages, _ = git_read(repo, "log", "--format=%B%x00", ref, limit=_read_limit())
        if params.message_contains.casefold() not in messages.decode("utf-8", "replace").casefold():
            return not_yet("git.no_commit_message", branch=params.branch, text=params.message_contains)
    return PASSED


def _inside_repository(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/") or "\x00" in value:
        raise ValueError(f"{value!r} must be a path inside the repository (no leading '/', no '..')")
    return value


class FileParams(CheckParams):
    path: Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_inside_repository)]
    branch: RefName = "main"
    contains: str | None = None
    matches: str | None = Field(default=None, description="A regular expression the content must match.")

    @field_validator("matches")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"is not a valid regular expression: {error}") from None
        return value


@check_type("git.file_exists", FileParams)
def file_exists(params: FileParams, context: CheckContext) -> CheckResult:
    repo = _repo(context)
    if repo is None:
        return check_error("git.unavailable")
    if not _has_ref(repo, f"refs/heads/{params.branch}"):
        return not_yet("git.empty_repo") if _is_empty(repo) else not_yet("git.no_branch", branch=params.branch)
    blob = _blob(repo, f"refs/heads/{params.branch}:{params.path}")
    if blob is None:
        return not_yet("git.no_file", branch=params.branch, path=params.path)
    if not (params.contains or params.matches):
        return PASSED
    oid, size = blob
    if size > _read_limit():  # asked before reading: git tells the size without unpacking the content
        return not_yet("git.file_too_large", branch=params.branch, path=params.path, size=_mib(size),
                       limit=_mib(_read_limit()))
    text = git_read(repo, "cat-file", "blob", oid, limit=size)[0].decode("utf-8", "replace")
    if params.contains and params.contains.casefold() not in text.casefold():
        return not_yet("git.file_content", branch=params.branch, path=params.path, text=params.contains)
    if params.matches and not re.search(params.matches, text, re.MULTILINE):
        return not_yet("git.file_content", branch=params.branch, path=params.path, text=params.matches)
    return PASSED


def _blob(repo: Path, spec: str) -> tuple[str, int] | None:
    """(object id, size in bytes) of the file at `ref:path`, or None when there is no such file."""
    found = git(repo, "rev-parse", "--verify", "--quiet", spec, check=False)
    if found.returncode != 0:
        return None
    oid = found.stdout.strip()
    if git(repo, "cat-file", "-t", oid).stdout.strip() != "blob":
        return None  # a directory is not a file
    return oid, int(git(repo, "cat-file", "-s", oid).stdout.strip())


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


class BranchParams(CheckParams):
    name: RefName


@check_type("git.branch_exists", BranchParams)
def branch_exists(params: BranchParams, context: CheckContext) -> CheckResult:
    repo = _repo(context)
    if repo is None:
        return check_error("git.unavailable")
    if not _has_ref(repo, f"refs/heads/{params.name}"):
        return not_yet("git.no_branch", branch=params.name)
    return PASSED


class MergeParams(CheckParams):
    branch: RefName = "main"
    merged: RefName | None = Field(default=None, description="A branch whose tip must be merged in.")


@check_type("git.merge_commit_exists", MergeParams)
def merge_commit_exists(params: MergeParams, context: CheckContext) -> CheckResult:
    repo = _repo(context)
    if repo is None:
        return check_error("git.unavailable")
    ref = f"refs/heads/{params.branch}"
    if not _has_ref(repo, ref):
        return not_yet("git.no_branch", branch=params.branch)
    if not git(repo, "rev-list", "--merges", "--max-count=1", ref).stdout.strip():
        return not_yet("git.no_merge", branch=params.branch)
    if params.merged:
        other = f"refs/heads/{params.merged}"
        if not _has_ref(repo, other):
            return not_yet("git.no_branch", branch=params.merged)
        if git(repo, "merge-base", "--is-ancestor", other, ref, check=False).returncode != 0:
            return not_yet("git.merge_missing_branch", branch=params.branch, merged=params.merged)
    return PASSED


class TagParams(CheckParams):
    name: RefName
    annotated: bool = False


@check_type("git.tag_exists", TagParams)
def tag_exists(params: TagParams, context: CheckContext) -> CheckResult:
    repo = _repo(context)
    if repo is None:
        return check_error("git.unavailable")
    kind = git(repo, "cat-file", "-t", f"refs/tags/{params.name}", check=False)
    if kind.returncode != 0:
        return not_yet("git.no_tag", tag=params.name)
    if params.annotated and kind.stdout.strip() != "tag":
        return not_yet("git.tag_not_annotated", tag=params.name)
    return PASSED


__all__ = ["GitError", "branch_exists", "commit_exists", "file_exists", "merge_commit_exists", "tag_exists"]
