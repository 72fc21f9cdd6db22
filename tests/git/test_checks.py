"""The git.* checks against real repositories built with real git."""

from __future__ import annotations

import os
import stat
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from app.git.checks import CommitParams, FileParams
from app.lessons.checks import CheckContext, check_types
from tests.helpers import git


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository and a clone: main with README, feature merged with --no-ff, tags."""
    bare, work = tmp_path / "r.git", tmp_path / "w"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), "w")
    (work / "README.md").write_text("# Title\nHello, Git!\n")
    git(work, "add", "."); git(work, "commit", "-qm", "Add README")  # noqa: E702
    git(work, "switch", "-qc", "feature")
    (work / "f.txt").write_text("feature\n")
    git(work, "add", "."); git(work, "commit", "-qm", "Feature work")  # noqa: E702
    git(work, "switch", "-q", "main")
    git(work, "merge", "-q", "--no-ff", "feature", "-m", "Merge feature")
    git(work, "switch", "-qc", "unmerged")
    (work / "u.txt").write_text("u\n")
    git(work, "add", "."); git(work, "commit", "-qm", "Unmerged")  # noqa: E702
    git(work, "tag", "light")
    git(work, "tag", "-a", "v1.0", "-m", "v1")
    git(work, "push", "-q", "--all", "origin")
    git(work, "push", "-q", "--tags", "origin")
    return bare, work


CASES = [
    ("git.commit_exists", {}, "passed", None),
    ("git.commit_exists", {"branch": "main", "min_commits": 3}, "passed", None),
    ("git.commit_exists", {"branch": "main", "min_commits": 9}, "not_yet", "git.few_commits"),
    ("git.commit_exists", {"branch": "nope"}, "not_yet", "git.no_branch"),
    ("git.commit_exists", {"message_contains": "add readme"}, "passed", None),
    ("git.commit_exists", {"message_contains": "fix typo"}, "not_yet", "git.no_commit_message"),
    ("git.file_exists", {"path": "README.md"}, "passed", None),
    ("git.file_exists", {"path": "README.md", "contains": "hello, git"}, "passed", None),
    ("git.file_exists", {"path": "README.md", "contains": "Goodbye"}, "not_yet", "git.file_content"),
    ("git.file_exists", {"path": "README.md", "matches": r"^# \w+$"}, "passed", None),
    ("git.file_exists", {"path": "u.txt"}, "not_yet", "git.no_file"),
    ("git.file_exists", {"path": "u.txt", "branch": "unmerged"}, "passed", None),
    ("git.branch_exists", {"name": "feature"}, "passed", None),
    ("git.branch_exists", {"name": "develop"}, "not_yet", "git.no_branch"),
    ("git.merge_commit_exists", {"branch": "main", "merged": "feature"}, "passed", None),
    ("git.merge_commit_exists", {"branch": "main", "merged": "unmerged"}, "not_yet", "git.merge_missing_branch"),
    ("git.merge_commit_exists", {"branch": "feature"}, "not_yet", "git.no_merge"),
    ("git.tag_exists", {"name": "v1.0", "annotated": True}, "passed", None),
    ("git.tag_exists", {"name": "light"}, "passed", None),
    ("git.tag_exists", {"name": "light", "annotated": True}, "not_yet", "git.tag_not_annotated"),
    ("git.tag_exists", {"name": "v2.0"}, "not_yet", "git.no_tag"),
]


@pytest.mark.parametrize(("name", "params", "status", "reason"), CASES)
def test_git_checks(repo: tuple[Path, Path], name: str, params: dict, status: str, reason: str | None) -> None:
    kind = check_types()[name]
    result = kind.run(kind.params.model_validate(params), CheckContext({"repo_path": str(repo[0])}))
    assert result.status == status
    assert (result.reason.key if result.reason else None) == reason
    if result.reason:
        assert result.reason.render("en") and result.reason.render("ru")


def test_empty_repository_says_no_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", "e.git")
    context = CheckContext({"repo_path": str(tmp_path / "e.git")})
    assert check_types()["git.commit_exists"].run(CommitParams(), context).reason.key == "git.empty_repo"  # type: ignore[union-attr]
    assert check_types()["git.file_exists"].run(FileParams(path="x"), context).reason.key == "git.empty_repo"  # type: ignore[union-attr]


def test_missing_repository_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = check_types()["git.branch_exists"].run(
        check_types()["git.branch_exists"].params.model_validate({"name": "x"}),
        CheckContext({"repo_path": str(tmp_path / "gone")}),
    )
    assert result.status == "error"


ZEROS = 64 * 1024 * 1024  # the attack used 512 MiB; 64 MiB is as decisive against a 1 MiB read limit


@pytest.fixture
def zeros_repo(tmp_path: Path) -> Path:
    """A bare repository whose README is 64 MiB of zeros (a few hundred KiB packed) with a 64 MiB commit message."""
    bare, work = tmp_path / "z.git", tmp_path / "zw"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), "zw")
    with open(work / "README.md", "wb") as handle:
        handle.truncate(ZEROS)
    (tmp_path / "message").write_bytes(b"Add README\n\n" + b"z" * ZEROS)
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-F", str(tmp_path / "message"))
    git(work, "push", "-q", "origin", "main")
    return bare


def _peak_bytes(action: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("name", "params", "status", "reason"), [
    ("git.file_exists", {"path": "README.md"}, "passed", None),
    ("git.file_exists", {"path": "README.md", "contains": "Title"}, "not_yet", "git.file_too_large"),
    ("git.file_exists", {"path": "README.md", "matches": "^#"}, "not_yet", "git.file_too_large"),
    ("git.commit_exists", {"message_contains": "add readme"}, "passed", None),
    ("git.commit_exists", {"message_contains": "fix typo"}, "not_yet", "git.no_commit_message"),
])
def test_a_huge_file_that_packs_small_is_never_read_whole(zeros_repo: Path, name: str, params: dict, status: str,
                                                           reason: str | None) -> None:
    kind = check_types()[name]
    result, peak = _peak_bytes(lambda: kind.run(kind.params.model_validate(params),
                                                CheckContext({"repo_path": str(zeros_repo)})))
    assert peak < 8 * 1024 * 1024, f"the check held {peak / 2**20:.0f} MiB"
    assert result.status == status  # type: ignore[attr-defined]
    assert (result.reason.key if result.reason else None) == reason  # type: ignore[attr-defined]
    if reason == "git.file_too_large":
        assert "64.0 MiB" in result.reason.render("en") and "1.0 MiB" in result.reason.render("ru")  # type: ignore[attr-defined]


def test_a_directory_is_not_a_file(repo: tuple[Path, Path], tmp_path: Path) -> None:
    work = repo[1]
    git(work, "switch", "-q", "main")
    (work / "docs").mkdir()
    (work / "docs" / "a.txt").write_text("a\n")
    git(work, "add", "."); git(work, "commit", "-qm", "docs"); git(work, "push", "-q", "origin", "main")  # noqa: E702
    result = check_types()["git.file_exists"].run(FileParams(path="docs"), CheckContext({"repo_path": str(repo[0])}))
    assert result.reason is not None and result.reason.key == "git.no_file"


def test_repositories_made_before_the_quota_get_the_current_hooks(tmp_path: Path) -> None:
    """The first run started after an upgrade brings older repositories' hooks and settings up to date."""
    from app.git.hook_script import HOOK, PRE_RECEIVE
    from app.git.repos import create_repo

    root = tmp_path / "git"
    root.mkdir()
    old = root / "git-basics-old-0000.git"
    git(tmp_path, "init", "-q", "--bare", str(old))
    (old / "hooks" / "post-receive").write_text("#!/bin/sh\n# an older hook\n")
    (root / ".template-0123456789ab.git").mkdir()  # where older versions kept the template
    create_repo(root, "git-basics", "new@example.com", hook_secret="s" * 16, hook_url="http://127.0.0.1:9/git/hook",
                public_url=None, quota_bytes=1234)
    assert (old / "hooks" / "post-receive").read_text() == HOOK
    assert (old / "hooks" / "pre-receive").read_text() == PRE_RECEIVE
    assert git(old, "config", "--get", "lessonbot.quota").strip() == "1234"
    assert git(old, "config", "--get", "receive.fsckObjects").strip() == "true"
    assert not (root / ".template-0123456789ab.git").exists()


def test_a_new_repository_is_one_git_takes_whatever_the_umask(tmp_path: Path) -> None:
    """A run's repository is laid out by hand (not copied): git must take it, push into it and serve it."""
    from app.git.hook_script import HOOK, PRE_RECEIVE
    from app.git.repos import create_repo, template_dir, upgrade_repos

    previous = os.umask(0o077)
    try:
        repo = create_repo(tmp_path / "git", "git-basics", "umask@example.com", hook_secret="s" * 16,
                           hook_url="http://127.0.0.1:9/git/hook", public_url=None)
    finally:
        os.umask(previous)
    for path in (repo.path, repo.path / "objects", repo.path / "refs", repo.path / "hooks"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path  # git-http-backend may run as another user
    for name in ("HEAD", "config"):
        assert stat.S_IMODE((repo.path / name).stat().st_mode) == 0o644
    for name, script in (("post-receive", HOOK), ("pre-receive", PRE_RECEIVE)):
        hook = repo.path / "hooks" / name
        assert hook.read_text() == script and os.access(hook, os.X_OK)
    assert git(repo.path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(repo.path, "config", "--get", "lessonbot.repo").strip() == repo.name

    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(repo.path), str(work))  # an empty repository clones (with a warning)
    (work / "README.md").write_text("hello\n")
    git(work, "add", "."); git(work, "commit", "-qm", "first"); git(work, "push", "-q", "origin", "HEAD:main")  # noqa: E702
    assert git(repo.path, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    git(repo.path, "fsck", "--strict")
    (repo.path / "hooks" / "post-receive").write_text("#!/bin/sh\n# edited by hand\n")
    assert upgrade_repos(tmp_path / "git", 1234) >= 1
    assert (repo.path / "hooks" / "post-receive").read_text() == HOOK
    assert [hook.read_text() for hook in template_dir(tmp_path / "git").glob("*/hooks/post-receive")] == [HOOK]
