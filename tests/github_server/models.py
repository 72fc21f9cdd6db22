"""What the GitHub test server keeps in memory: accounts, the App, repositories with real git object ids."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

# GitHub's closing keywords (docs: "Linking a pull request to an issue").
CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.IGNORECASE)


def now_iso(at: float | None = None) -> str:
    """A timestamp as GitHub writes it: UTC, whole seconds, `Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


def git_sha(kind: str, payload: bytes) -> str:
    """The id git gives an object of this kind and content."""
    return hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()


@dataclass
class Account:
    """A user, a bot or an organization."""

    id: int
    login: str
    type: Literal["User", "Organization", "Bot"]
    name: str | None = None
    email: str | None = None
    token: str = ""  # a user's personal access token; empty for organizations
    created_at: float = field(default_factory=time.time)


@dataclass
class App:
    """The GitHub App: its id, its slug and the public half of its key (PEM)."""

    id: int
    slug: str
    name: str
    owner: Account
    public_key_pem: bytes
    permissions: dict[str, str]
    events: list[str]
    bot: Account  # `<slug>[bot]`: who the App's installation tokens act as
    created_at: float = field(default_factory=time.time)


@dataclass
class Installation:
    """The App installed on one organization (all its repositories)."""

    id: int
    app: App
    account: Account
    created_at: float = field(default_factory=time.time)


@dataclass
class InstallationToken:
    token: str
    installation: Installation
    expires_at: float


@dataclass
class Commit:
    sha: str
    tree: dict[str, bytes]
    parents: list[str]
    message: str
    author: Account
    at: float

    @staticmethod
    def make(tree: dict[str, bytes], parents: list[str], message: str, author: Account) -> Commit:
        """A commit whose id is derived from its content, parents, message and time, as git's is."""
        at = time.time()
        entries = "".join(f"{path}\0{git_sha('blob', data)}\n" for path, data in sorted(tree.items()))
        tree_sha = git_sha("tree", entries.encode())
        body = f"tree {tree_sha}\n" + "".join(f"parent {p}\n" for p in parents)
        body += f"author {author.login} <{author.id}+{author.login}@users.noreply.github.com> {int(at)} +0000\n\n{message}"
        return Commit(git_sha("commit", body.encode() + secrets.token_bytes(4)), dict(tree), list(parents), message,
                      author, at)


@dataclass
class Invitation:
    id: int
    repo: Repo
    invitee: Account
    inviter: Account
    permission: str
    created_at: float = field(default_factory=time.time)


@dataclass
class Review:
    id: int
    user: Account
    state: Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED"]
    body: str
    commit_id: str
    submitted_at: float = field(default_factory=time.time)


@dataclass
class ReviewComment:
    """A comment on one line of a pull request's file (a review's, or a reply in its thread)."""

    id: int
    review_id: int | None
    user: Account
    path: str
    line: int
    body: str
    commit_id: str
    in_reply_to_id: int | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Push:
    """What a push event tells: the branch, its tip before (zeros for a new branch) and after, the new commits."""

    branch: str
    before: str
    after: str
    commits: tuple[Commit, ...] = ()

    @property
    def created(self) -> bool:
        return self.before == "0" * 40


@dataclass
class WorkflowRun:
    """A run of one workflow file for one push (the server does not run workflows: see `Repo.trigger_workflows`)."""

    id: int
    run_number: int
    path: str
    branch: str
    commit: Commit
    conclusion: Literal["success", "failure"]
    status: str = "completed"
    event: str = "push"
    created_at: float = field(default_factory=time.time)


@dataclass
class Issue:
    """An issue or a pull request: they share one numbering, as on GitHub."""

    number: int
    id: int
    title: str
    body: str | None
    user: Account
    state: Literal["open", "closed"] = "open"
    state_reason: str | None = None
    closed_by: Account | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    labels: list[str] = field(default_factory=list)
    # Pull requests only:
    head: str | None = None
    base: str | None = None
    head_sha: str | None = None
    merged_at: float | None = None
    merged_by: Account | None = None
    merge_commit_sha: str | None = None
    reviews: list[Review] = field(default_factory=list)
    review_comments: list[ReviewComment] = field(default_factory=list)

    @property
    def is_pull(self) -> bool:
        return self.head is not None

    def close(self, by: Account, reason: str = "completed") -> None:
        self.state, self.state_reason, self.closed_by = "closed", reason, by
        self.closed_at = self.updated_at = time.time()


@dataclass
class Repo:
    id: int
    owner: Account
    name: str
    description: str | None
    private: bool
    is_template: bool = False
    archived: bool = False
    default_branch: str = "main"
    template_of: Repo | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    collaborators: set[str] = field(default_factory=set)
    issues: dict[int, Issue] = field(default_factory=dict)
    runs: list[WorkflowRun] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    pushed_at: float = field(default_factory=time.time)

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    def tip(self, branch: str) -> Commit | None:
        sha = self.branches.get(branch)
        return self.commits[sha] if sha else None

    def commit_on(self, branch: str, tree: dict[str, bytes], message: str, author: Account,
                  extra_parents: tuple[str, ...] = ()) -> Commit:
        """A new commit on `branch` (created if missing) with this tree."""
        parents = [sha for sha in (self.branches.get(branch), *extra_parents) if sha]
        commit = Commit.make(tree, parents, message, author)
        self.commits[commit.sha] = commit
        self.branches[branch] = commit.sha
        self.pushed_at = self.updated_at = commit.at
        self.trigger_workflows(branch)
        return commit

    def trigger_workflows(self, branch: str) -> None:
        """A push runs each workflow in `.github/workflows/` at the pushed commit.

        The server runs no code: a workflow whose file contains `exit 1` fails, any other succeeds,
        at once. That is enough for a lesson's "make the workflow pass" step.
        """
        commit = self.commits[self.branches[branch]]
        for path, data in sorted(commit.tree.items()):
            if path.startswith(".github/workflows/") and path.endswith((".yml", ".yaml")):
                conclusion: Literal["success", "failure"] = "failure" if b"exit 1" in data else "success"
                number = len(self.runs) + 1
                self.runs.append(WorkflowRun(self.id * 1000 + number, number, path, branch, commit, conclusion))

    def new_commits(self, tip: str, known: str | None) -> list[Commit]:
        """Commits reachable from `tip` but not from `known`."""
        seen = self._reachable(known) if known else set()
        found, pending = [], [tip]
        while pending:
            sha = pending.pop()
            if sha in seen:
                continue
            seen.add(sha)
            commit = self.commits[sha]
            found.append(commit)
            pending.extend(commit.parents)
        return found

    def _reachable(self, sha: str) -> set[str]:
        seen, pending = set(), [sha]
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                pending.extend(self.commits[current].parents)
        return seen

    def closing_numbers(self, texts: list[str]) -> set[int]:
        """Issue numbers that `Fixes #N` (and the other keywords) in these texts close."""
        return {int(number) for text in texts for number in CLOSING.findall(text or "")}
