"""`Hub`: the server's state and the operations on it, each as GitHub performs it.

Every method runs under `lock` (the API takes it around each view). Errors are `ApiError`,
answered as GitHub's `basic-error` (`message`, `documentation_url`, `status`).
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import Account, App, Installation, InstallationToken, Invitation, Issue, Repo, ReviewComment

DOCS = "https://docs.github.com/rest"
DEFAULT_PERMISSIONS = {"administration": "write", "contents": "write", "pull_requests": "write", "issues": "write",
                       "members": "read", "metadata": "read", "actions": "read"}
# Ids are unique across servers in one process, as GitHub's are: githubkit caches installation
# tokens by App and installation id, so two servers must never share those.
_IDS = itertools.count(1001)
_IDS_LOCK = threading.Lock()
DEFAULT_EVENTS = ["pull_request", "pull_request_review", "issues", "push", "workflow_run", "member"]


@dataclass
class ApiError(Exception):
    status: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def unprocessable(message: str, **extra: Any) -> ApiError:
    return ApiError(422, message, extra)


class Hub:
    """Accounts, the App and its installations, repositories."""

    def __init__(self, token_lifetime_seconds: float = 3600.0) -> None:
        self.lock = threading.RLock()
        self.token_lifetime_seconds = token_lifetime_seconds
        self.accounts: dict[str, Account] = {}
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, InstallationToken] = {}
        self.repos: dict[str, Repo] = {}
        self.invitations: dict[int, Invitation] = {}
        # (event, action or None, repository, sender, the event's objects: pull, issue, review, comment, member, push)
        self.on_event: Callable[..., None] = lambda *_, **__: None

    def next_id(self) -> int:
        with _IDS_LOCK:
            return next(_IDS)

    # -- accounts, the App ------------------------------------------------------

    def add_account(self, login: str, kind: str = "User", name: str | None = None) -> Account:
        with self.lock:
            if login.lower() in self.accounts:
                raise ValueError(f"account {login} exists")
            token = f"ghp_{secrets.token_urlsafe(27)}" if kind == "User" else ""
            account = Account(self.next_id(), login, kind, name=name or login, email=None, token=token)  # type: ignore[arg-type]
            self.accounts[login.lower()] = account
            return account

    def account(self, login: str) -> Account:
        found = self.accounts.get(login.lower())
        if found is None:
            raise not_found()
        return found

    def add_app(self, slug: str, owner: Account, public_key_pem: bytes) -> App:
        with self.lock:
            bot = Account(self.next_id(), f"{slug}[bot]", "Bot")
            self.accounts[bot.login.lower()] = bot
            app = App(self.next_id(), slug, slug.replace("-", " ").title(), owner, public_key_pem,
                      dict(DEFAULT_PERMISSIONS), list(DEFAULT_EVENTS), bot)
            self.apps[app.id] = app
            return app

    def install(self, app: App, org: Account) -> Installation:
        with self.lock:
            installation = Installation(self.next_id(), app, org)
            self.installations[installation.id] = installation
            return installation

    def installation_for(self, app: App, org_login: str) -> Installation:
        for installation in self.installations.values():
            if installation.app.id == app.id and installation.account.login.lower() == org_login.lower():
                return installation
        raise not_found()

    def issue_token(self, app: App, installation_id: int) -> InstallationToken:
        installation = self.installations.get(installation_id)
        if installation is None or installation.app.id != app.id:
            raise not_found()
        token = InstallationToken(f"ghs_{secrets.token_urlsafe(27)}", installation,
                                  time.time() + self.token_lifetime_seconds)
        self.tokens[token.token] = token
        return token

    def user_by_token(self, token: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.token and secrets.compare_digest(a.token, token)), None)

    # -- repositories -------------------------------------------------------------

    def add_repo(self, owner: Account, name: str, files: dict[str, bytes] | None = None, *, template: bool = False,
                 private: bool = True, description: str | None = None) -> Repo:
        with self.lock:
            full_name = f"{owner.login}/{name}".lower()
            if full_name in self.repos:
                raise unprocessable("Repository creation failed.",
                                    errors=[{"resource": "Repository", "code": "custom", "field": "name",
                                             "message": "name already exists on this account"}])
            repo = Repo(self.next_id(), owner, name, description, private, is_template=template)
            if files:
                repo.commit_on(repo.default_branch, files, "Initial commit", owner)
            self.repos[full_name] = repo
            return repo

    def repo(self, owner: str, name: str) -> Repo:
        found = self.repos.get(f"{owner}/{name}".lower())
        if found is None:
            raise not_found()
        return found

    def generate(self, template: Repo, owner: Account, name: str, description: str | None, private: bool) -> Repo:
        if not template.is_template:
            raise unprocessable(f"{template.full_name} is not a template repository")
        tip = template.tip(template.default_branch)
        repo = self.add_repo(owner, name, dict(tip.tree) if tip else None, private=private, description=description)
        repo.template_of = template
        return repo

    def invite(self, repo: Repo, invitee: Account, inviter: Account, permission: str) -> Invitation | None:
        """A new (or the pending) invitation; None when the user is a collaborator already."""
        if invitee.login in repo.collaborators or invitee.id == repo.owner.id:
            return None
        for invitation in self.invitations.values():
            if invitation.repo is repo and invitation.invitee is invitee:
                invitation.permission = permission
                return invitation
        invitation = Invitation(self.next_id(), repo, invitee, inviter, permission)
        self.invitations[invitation.id] = invitation
        return invitation

    def accept(self, user: Account, invitation_id: int) -> None:
        invitation = self.invitations.get(invitation_id)
        if invitation is None or invitation.invitee is not user:
            raise not_found()
        invitation.repo.collaborators.add(user.login)
        del self.invitations[invitation_id]
        self.on_event("member", "added", invitation.repo, user, member=user)

    # -- issues and pull requests ------------------------------------------------

    def open_issue(self, repo: Repo, user: Account, title: str, body: str | None, labels: list[str],
                   **pull: Any) -> Issue:
        number = max(repo.issues, default=0) + 1
        issue = Issue(number, self.next_id(), title, body, user, labels=labels, **pull)
        repo.issues[number] = issue
        repo.updated_at = time.time()
        return issue

    def open_pull(self, repo: Repo, user: Account, title: str, head: str, base: str, body: str | None) -> Issue:
        head_branch = head.split(":", 1)[-1]
        if head_branch not in repo.branches:
            raise unprocessable("Validation Failed", errors=[{"resource": "PullRequest", "field": "head",
                                                              "code": "invalid"}])
        if base not in repo.branches:
            raise unprocessable("Validation Failed", errors=[{"resource": "PullRequest", "field": "base",
                                                              "code": "invalid"}])
        if repo.branches[head_branch] == repo.branches[base] or not repo.new_commits(repo.branches[head_branch],
                                                                                       repo.branches[base]):
            raise unprocessable("Validation Failed", errors=[{"resource": "PullRequest", "code": "custom",
                                                              "message": f"No commits between {base} and {head_branch}"}])
        for issue in repo.issues.values():
            if issue.is_pull and issue.state == "open" and issue.head == head_branch and issue.base == base:
                raise unprocessable("Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {repo.owner.login}:{head_branch}."}])
        return self.open_issue(repo, user, title, body, [], head=head_branch, base=base,
                               head_sha=repo.branches[head_branch])

    def merge(self, repo: Repo, pull: Issue, user: Account, method: str, title: str | None) -> str:
        """Merge a pull request (merge commit or squash); the new commit's id."""
        if pull.merged_at is not None or pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        assert pull.head is not None and pull.base is not None
        head_sha, base_sha = repo.branches[pull.head], repo.branches[pull.base]
        introduced = repo.new_commits(head_sha, base_sha)
        tree = {**repo.commits[base_sha].tree, **repo.commits[head_sha].tree}
        message = title or f"Merge pull request #{pull.number} from {repo.owner.login}/{pull.head}"
        extra = (head_sha,) if method == "merge" else ()
        commit = repo.commit_on(pull.base, tree, message, user, extra_parents=extra)
        pull.merged_at, pull.merged_by, pull.merge_commit_sha = commit.at, user, commit.sha
        pull.close(user)
        pull.state_reason = None
        pull.head_sha = head_sha
        if pull.base == repo.default_branch:
            texts = [pull.body or "", pull.title, *(c.message for c in introduced)]
            self.close_referenced(repo, texts, user)
        return commit.sha

    def close_referenced(self, repo: Repo, texts: list[str], user: Account) -> None:
        """Close the open issues that closing keywords in these texts name."""
        for number in repo.closing_numbers(texts):
            issue = repo.issues.get(number)
            if issue is not None and not issue.is_pull and issue.state == "open":
                issue.close(user)

    def comment_on_line(self, repo: Repo, pull: Issue, user: Account, path: str, line: int, body: str,
                        review_id: int | None) -> ReviewComment:
        """A review comment on a line of a file the pull request changes, as GitHub refuses any other."""
        assert pull.head is not None and pull.base is not None
        head, base = repo.tip(pull.head), repo.tip(pull.base)
        changed = head is not None and path in head.tree and (base is None or base.tree.get(path) != head.tree[path])
        if not changed or head is None:
            raise unprocessable("Unprocessable Entity", errors=["Path could not be resolved"])
        if not 1 <= line <= len(head.tree[path].decode(errors="replace").splitlines()):
            raise unprocessable("Unprocessable Entity", errors=["Line could not be resolved"])
        comment = ReviewComment(self.next_id(), review_id, user, path, line, body, head.sha)
        pull.review_comments.append(comment)
        return comment

    def reply_to_comment(self, pull: Issue, user: Account, comment_id: int, body: str) -> ReviewComment:
        """A reply in the thread of a review comment: same file and line, `in_reply_to_id` the thread's first."""
        first = next((c for c in pull.review_comments if c.id == comment_id), None)
        if first is None:
            raise not_found()
        reply = ReviewComment(self.next_id(), None, user, first.path, first.line, body, first.commit_id,
                              in_reply_to_id=first.in_reply_to_id or first.id)
        pull.review_comments.append(reply)
        return reply
