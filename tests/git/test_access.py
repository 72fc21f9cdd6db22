"""Which git request paths name exactly one repository (the core's side of item 1 of issue 9)."""

from __future__ import annotations

import pytest

from app.git.access import GitAccessDenied, requested_repo

SERVED = [
    ("/git/git-basics-a-1234abcd.git/info/refs", "git-basics-a-1234abcd"),
    ("/git/r1.git/info/refs?service=git-receive-pack", "r1"),
    ("/git/r1.git/git-upload-pack", "r1"),
    ("/git/r1.git/git-receive-pack", "r1"),
    ("/git/r1.git/HEAD", "r1"),
    ("/git/r1.git/objects/info/packs", "r1"),
    ("/git/r1.git/objects/ab/" + "c" * 38, "r1"),
    ("/git/r1.git/objects/pack/pack-" + "0" * 40 + ".idx", "r1"),
    ("/git/r1.git", "r1"),
    ("/git/r1.git/", "r1"),
]

REFUSED = [
    "/git/a.git/../b.git/info/refs",
    "/git/a.git/./info/refs",
    "/git/a.git/info/../../b.git/info/refs",
    "/git/a.git/%2e%2e/b.git/info/refs",
    "/git/a.git/%2E%2E/b.git/info/refs",
    "/git/a.git/%252e%252e/b.git/info/refs",
    "/git/a.git//info/refs",
    "/git//a.git/info/refs",
    "/git/a.git/b.git/info/refs",
    "/git/a.git/..%2fb.git/info/refs",
    "/git/a.git\\..\\b.git/info/refs",
    "/git/.template-0123456789ab.git/info/refs",
    "/git/A.git/info/refs",
    "/git/a.git/config",
    "/git/a.git/hooks/post-receive",
    "/git/a.git/objects/../../b.git/HEAD",
    "/git/hook",
    "/other/a.git/info/refs",
    "",
]


@pytest.mark.parametrize(("path", "repo"), SERVED)
def test_git_protocol_paths_name_their_repository(path: str, repo: str) -> None:
    assert requested_repo(path) == repo


@pytest.mark.parametrize("path", REFUSED)
def test_any_other_spelling_is_refused_with_a_sentence(path: str) -> None:
    with pytest.raises(GitAccessDenied, match=r"^The path .*\.$"):
        requested_repo(path)
