"""The git.* checks: they read the run's hosted bare repository itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from app.git.repos import GitError, git
from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_error, check_type, not_yet


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
        messages = git(repo, "log", "--format=%B%x00", ref).stdout.casefold()
        if params.message_contains.casefold() not in messages:
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
    shown = git(repo, "show", f"refs/heads/{params.branch}:{params.path}", check=False)
    if shown.returncode != 0:
        return not_yet("git.no_file", branch=params.branch, path=params.path)
    if params.contains and params.contains.casefold() not in shown.stdout.casefold():
        return not_yet("git.file_content", branch=params.branch, path=params.path, text=params.contains)
    if params.matches and not re.search(params.matches, shown.stdout, re.MULTILINE):
        return not_yet("git.file_content", branch=params.branch, path=params.path, text=params.matches)
    return PASSED


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
