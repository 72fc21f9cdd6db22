"""The endpoints: each takes a `Call` and returns (status, JSON body or None for an empty answer)."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .hub import ApiError, Hub, not_found, unprocessable
from .models import Account, App, Installation, Issue, Push, Repo, Review, now_iso
from .shapes import Urls


@dataclass(frozen=True)
class Caller:
    """Who a request is from: the App (JWT), one of its installations (token) or a user (token)."""

    kind: Literal["app", "installation", "user"]
    app: App | None = None
    installation: Installation | None = None
    user: Account | None = None
    token_expires_at: float | None = None

    @property
    def rate_key(self) -> str:
        if self.installation is not None:
            return f"installation:{self.installation.id}"
        if self.user is not None:
            return f"user:{self.user.login}"
        return f"app:{self.app.id if self.app else 0}"

    @property
    def actor(self) -> Account:
        """The account that a write is made as (an installation acts as the App's bot)."""
        if self.user is not None:
            return self.user
        if self.installation is not None:
            return self.installation.app.bot
        raise ApiError(403, "A JSON web token could not be used for this request; use an installation token")


@dataclass
class Call:
    hub: Hub
    urls: Urls
    caller: Caller
    query: dict[str, str]
    body: Any
    path_args: dict[str, Any]

    def field(self, name: str, default: Any = None) -> Any:
        value = self.body.get(name, default) if isinstance(self.body, dict) else default
        return value

    def required(self, name: str) -> Any:
        value = self.field(name)
        if value is None:
            raise unprocessable(f'Invalid request.\n\n"{name}" wasn\'t supplied.')
        return value


Answer = tuple[int, Any]
View = Callable[[Call], Answer]


def _require(call: Call, *kinds: str) -> None:
    if call.caller.kind not in kinds:
        if call.caller.kind == "app":
            raise ApiError(401, "A JSON web token could not be decoded")
        raise ApiError(401, "'Authorization' header is using an invalid format; use a JSON web token")


def _repo(call: Call, owner_key: str = "owner", name_key: str = "repo", *, write: bool = False) -> Repo:
    """The repository named in the path, if the caller may see it (GitHub answers 404 otherwise)."""
    repo = call.hub.repo(call.path_args[owner_key], call.path_args[name_key])
    caller = call.caller
    member = (caller.installation is not None and caller.installation.account.id == repo.owner.id) or (
        caller.user is not None and (caller.user.login in repo.collaborators or caller.user.id == repo.owner.id))
    if not member and not (caller.user is not None and not repo.private and not write):
        raise not_found()
    if write and repo.archived:
        raise ApiError(403, "Repository was archived so is read-only.")
    return repo


# -- the App ------------------------------------------------------------------


def get_app(call: Call) -> Answer:
    _require(call, "app")
    assert call.caller.app is not None
    return 200, call.urls.app(call.caller.app)


def get_org_installation(call: Call) -> Answer:
    _require(call, "app")
    assert call.caller.app is not None
    return 200, call.urls.installation(call.hub.installation_for(call.caller.app, call.path_args["org"]))


def create_installation_token(call: Call) -> Answer:
    _require(call, "app")
    assert call.caller.app is not None
    token = call.hub.issue_token(call.caller.app, int(call.path_args["installation_id"]))
    return 201, {"token": token.token, "expires_at": now_iso(token.expires_at),
                 "permissions": dict(call.caller.app.permissions), "repository_selection": "all"}


def rate_limit_view(call: Call) -> Answer:
    raise AssertionError("answered by the API itself, which keeps the counts")


# -- users --------------------------------------------------------------------


def get_user(call: Call) -> Answer:
    _require(call, "user")
    assert call.caller.user is not None
    return 200, call.urls.private_user(call.caller.user)


def get_user_by_login(call: Call) -> Answer:
    account = call.hub.account(call.path_args["username"])
    if account.type == "Organization":
        raise not_found()  # GitHub answers an organization here too, with more fields; not needed
    return 200, call.urls.public_user(account)


def list_invitations(call: Call) -> Answer:
    _require(call, "user")
    mine = [i for i in call.hub.invitations.values() if i.invitee is call.caller.user]
    return 200, [call.urls.invitation(invitation) for invitation in mine]


def accept_invitation(call: Call) -> Answer:
    _require(call, "user")
    assert call.caller.user is not None
    call.hub.accept(call.caller.user, int(call.path_args["invitation_id"]))
    return 204, None


# -- repositories -------------------------------------------------------------


def generate_repo(call: Call) -> Answer:
    _require(call, "installation", "user")
    template = _repo(call, "template_owner", "template_repo")
    owner = call.hub.account(call.field("owner") or call.caller.actor.login)
    if call.caller.installation is not None and owner.id != call.caller.installation.account.id:
        raise ApiError(403, "Resource not accessible by integration")
    repo = call.hub.generate(template, owner, call.required("name"), call.field("description"),
                             bool(call.field("private", False)))
    return 201, call.urls.repository(repo)


def get_repo(call: Call) -> Answer:
    return 200, call.urls.repository(_repo(call))


def update_repo(call: Call) -> Answer:
    """PATCH /repos/{owner}/{repo}: here only `archived` (true archives, false unarchives) and `description`."""
    repo = _repo(call)
    if call.caller.installation is None and (call.caller.user is None or call.caller.user.id != repo.owner.id):
        raise ApiError(403, "Must have admin rights to Repository.")
    if call.field("archived") is not None:
        repo.archived = bool(call.field("archived"))
    if call.field("description") is not None:
        repo.description = str(call.field("description"))
    repo.updated_at = time.time()
    return 200, call.urls.repository(repo)


def check_collaborator(call: Call) -> Answer:
    repo = _repo(call)
    login = call.path_args["username"]
    is_one = login.lower() in {c.lower() for c in repo.collaborators} or login.lower() == repo.owner.login.lower()
    if not is_one:
        raise not_found()
    return 204, None


def list_collaborators(call: Call) -> Answer:
    """The repository's collaborators (those who accepted their invitation), in the order they joined."""
    repo = _repo(call)
    accounts = [call.hub.account(login) for login in repo.collaborators]
    return 200, [call.urls.collaborator(account) for account in sorted(accounts, key=lambda a: a.id)]


def add_collaborator(call: Call) -> Answer:
    repo = _repo(call, write=True)
    invitee = call.hub.account(call.path_args["username"])
    # The request names push/pull, the invitation says write/read, as on GitHub.
    permission = {"push": "write", "pull": "read"}.get(call.field("permission", "push"), call.field("permission"))
    invitation = call.hub.invite(repo, invitee, call.caller.actor, permission)
    if invitation is None:
        return 204, None
    return 201, call.urls.invitation(invitation)


# -- git data and contents ------------------------------------------------------


def get_ref(call: Call) -> Answer:
    repo = _repo(call)
    ref = call.path_args["ref"]
    if not ref.startswith("heads/") or ref.removeprefix("heads/") not in repo.branches:
        raise not_found()
    return 200, call.urls.git_ref(repo, ref.removeprefix("heads/"))


def matching_refs(call: Call) -> Answer:
    """Branches whose ref starts with `heads/<prefix>`, as a list (empty, not 404, when none matches)."""
    repo = _repo(call)
    prefix = call.path_args["ref"]
    if not prefix.startswith("heads/"):
        return 200, []
    wanted = prefix.removeprefix("heads/")
    return 200, [call.urls.git_ref(repo, branch) for branch in sorted(repo.branches) if branch.startswith(wanted)]


def create_ref(call: Call) -> Answer:
    repo = _repo(call, write=True)
    ref, sha = str(call.required("ref")), str(call.required("sha"))
    if not ref.startswith("refs/heads/") or ref.count("/") < 2:
        raise unprocessable("Reference name must start with 'refs/' and have at least two slashes.")
    branch = ref.removeprefix("refs/heads/")
    if branch in repo.branches:
        raise unprocessable("Reference already exists")
    if sha not in repo.commits:
        raise unprocessable("Object does not exist")
    repo.branches[branch] = sha
    repo.pushed_at = time.time()
    repo.trigger_workflows(branch)
    call.hub.on_event("push", None, repo, call.caller.actor, push=Push(branch, "0" * 40, sha))
    return 201, call.urls.git_ref(repo, branch)


def get_content(call: Call) -> Answer:
    repo = _repo(call)
    ref = call.query.get("ref") or repo.default_branch
    commit = repo.tip(ref) or repo.commits.get(ref)
    path = call.path_args["path"].strip("/")
    if commit is None or path not in commit.tree:
        raise not_found()
    return 200, call.urls.content_file(repo, path, commit.tree[path], ref)


def put_content(call: Call) -> Answer:
    repo = _repo(call, write=True)
    path = call.path_args["path"].strip("/")
    branch = call.field("branch") or repo.default_branch
    try:
        data = base64.b64decode(str(call.required("content")), validate=True)
    except binascii.Error:
        raise unprocessable("content is not valid Base64") from None
    tip = repo.tip(branch)
    if tip is None:
        raise unprocessable(f"Branch {branch} not found")
    existed = path in tip.tree
    if existed and call.field("sha") is None:
        raise unprocessable('Invalid request.\n\n"sha" wasn\'t supplied.')
    commit = repo.commit_on(branch, {**tip.tree, path: data}, str(call.required("message")), call.caller.actor)
    if branch == repo.default_branch:
        call.hub.close_referenced(repo, [commit.message], call.caller.actor)
    call.hub.on_event("push", None, repo, call.caller.actor, push=Push(branch, tip.sha, commit.sha, (commit,)))
    return (200 if existed else 201), call.urls.file_commit(repo, path, commit, branch)


# -- pull requests and issues --------------------------------------------------


def _pull(call: Call, repo: Repo) -> Issue:
    issue = repo.issues.get(int(call.path_args["pull_number"]))
    if issue is None or not issue.is_pull:
        raise not_found()
    return issue


def _issue(call: Call, repo: Repo) -> Issue:
    issue = repo.issues.get(int(call.path_args["issue_number"]))
    if issue is None:
        raise not_found()
    return issue


def _state_filter(call: Call) -> Callable[[Issue], bool]:
    state = call.query.get("state", "open")
    return lambda issue: state == "all" or issue.state == state


def _page(call: Call, items: list[Issue]) -> list[Issue]:
    """Newest first, as GitHub lists them by default; `per_page` and `page`."""
    per_page = min(int(call.query.get("per_page", 30)), 100)
    page = max(int(call.query.get("page", 1)), 1)
    ordered = sorted(items, key=lambda issue: issue.created_at, reverse=True)
    return ordered[(page - 1) * per_page:page * per_page]


def list_pulls(call: Call) -> Answer:
    repo = _repo(call)
    wanted = _state_filter(call)
    head = call.query.get("head")
    base = call.query.get("base")
    found = [
        issue for issue in repo.issues.values()
        if issue.is_pull and wanted(issue) and (not base or issue.base == base)
        and (not head or f"{repo.owner.login}:{issue.head}".lower() == head.lower())
    ]
    return 200, [call.urls.pull_simple(repo, pull) for pull in _page(call, found)]


def create_pull(call: Call) -> Answer:
    repo = _repo(call, write=True)
    pull = call.hub.open_pull(repo, call.caller.actor, str(call.required("title")), str(call.required("head")),
                              str(call.required("base")), call.field("body"))
    call.hub.on_event("pull_request", "opened", repo, call.caller.actor, pull=pull)
    return 201, call.urls.pull(repo, pull)


def get_pull(call: Call) -> Answer:
    repo = _repo(call)
    return 200, call.urls.pull(repo, _pull(call, repo))


def merge_pull(call: Call) -> Answer:
    repo = _repo(call, write=True)
    pull = _pull(call, repo)
    method = call.field("merge_method", "merge")
    if method not in ("merge", "squash"):
        raise ApiError(405, f"{method} merges are not allowed on this repository")
    assert pull.base is not None
    before = repo.branches[pull.base]
    sha = call.hub.merge(repo, pull, call.caller.actor, method, call.field("commit_title"))
    call.hub.on_event("pull_request", "closed", repo, call.caller.actor, pull=pull)
    call.hub.on_event("push", None, repo, call.caller.actor, push=Push(pull.base, before, sha, (repo.commits[sha],)))
    return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}


def list_issues(call: Call) -> Answer:
    repo = _repo(call)
    wanted = _state_filter(call)
    found = [issue for issue in repo.issues.values() if wanted(issue)]
    return 200, [call.urls.issue(repo, issue) for issue in _page(call, found)]


def create_issue(call: Call) -> Answer:
    repo = _repo(call, write=True)
    labels = [label if isinstance(label, str) else str(label.get("name")) for label in call.field("labels") or []]
    issue = call.hub.open_issue(repo, call.caller.actor, str(call.required("title")), call.field("body"), labels)
    call.hub.on_event("issues", "opened", repo, call.caller.actor, issue=issue)
    return 201, call.urls.issue(repo, issue)


def get_issue(call: Call) -> Answer:
    repo = _repo(call)
    return 200, call.urls.issue(repo, _issue(call, repo))


def update_issue(call: Call) -> Answer:
    repo = _repo(call, write=True)
    issue = _issue(call, repo)
    state = call.field("state")
    if state == "closed" and issue.state == "open":
        issue.close(call.caller.actor, call.field("state_reason") or "completed")
    elif state == "open" and issue.state == "closed":
        issue.state, issue.state_reason, issue.closed_at, issue.closed_by = "open", "reopened", None, None
    changes = {}
    if call.field("title") is not None:
        changes["title"] = {"from": issue.title}
        issue.title = str(call.field("title"))
    if call.field("labels") is not None:
        issue.labels = [str(label) for label in call.field("labels")]
    issue.updated_at = time.time()
    if state is None:
        call.hub.on_event("issues", "edited", repo, call.caller.actor, issue=issue, changes=changes)
    else:
        call.hub.on_event("issues", state.replace("open", "reopened"), repo, call.caller.actor, issue=issue)
    return 200, call.urls.issue(repo, issue)


REVIEW_EVENTS = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}


def list_reviews(call: Call) -> Answer:
    repo = _repo(call)
    pull = _pull(call, repo)
    return 200, [call.urls.review(repo, pull, review) for review in pull.reviews]


def create_review(call: Call) -> Answer:
    """A submitted review; GitHub refuses approving or requesting changes on one's own pull request."""
    repo = _repo(call)
    pull = _pull(call, repo)
    event = call.field("event")
    if event not in REVIEW_EVENTS:
        raise unprocessable("Unprocessable Entity", errors=["A pending review is not supported here: give event"])
    actor = call.caller.actor
    if actor.id == pull.user.id and event != "COMMENT":
        verb = "approve" if event == "APPROVE" else "request changes on"
        raise unprocessable("Unprocessable Entity", errors=[f"Can not {verb} your own pull request"])
    if event == "REQUEST_CHANGES" and not call.field("body"):
        raise unprocessable("Unprocessable Entity", errors=["Review body is required for REQUEST_CHANGES"])
    assert pull.head is not None
    review = Review(call.hub.next_id(), actor, REVIEW_EVENTS[event], str(call.field("body") or ""),
                    repo.branches.get(pull.head, pull.head_sha or ""))
    for comment in call.field("comments") or []:  # all or none: a comment GitHub refuses refuses the review
        if comment.get("position") is not None or comment.get("line") is None:
            raise unprocessable("Unprocessable Entity", errors=["This server takes review comments by line"])
    comments = [call.hub.comment_on_line(repo, pull, actor, str(comment.get("path")), int(comment["line"]),
                                         str(comment.get("body") or ""), review.id)
                for comment in call.field("comments") or []]
    pull.reviews.append(review)
    pull.updated_at = review.submitted_at
    call.hub.on_event("pull_request_review", "submitted", repo, actor, pull=pull, review=review)
    for comment in comments:
        call.hub.on_event("pull_request_review_comment", "created", repo, actor, pull=pull, comment=comment)
    return 200, call.urls.review(repo, pull, review)


def list_review_comments(call: Call) -> Answer:
    """A pull request's review comments, oldest first, as GitHub lists them."""
    repo = _repo(call)
    pull = _pull(call, repo)
    return 200, [call.urls.review_comment(repo, pull, comment) for comment in pull.review_comments]


def create_review_comment(call: Call) -> Answer:
    """A single review comment on a line, or (`in_reply_to`) a reply in a comment's thread."""
    repo = _repo(call)
    pull = _pull(call, repo)
    body, actor = str(call.required("body")), call.caller.actor
    if call.field("in_reply_to") is not None:
        comment = call.hub.reply_to_comment(pull, actor, int(call.field("in_reply_to")), body)
    else:
        comment = call.hub.comment_on_line(repo, pull, actor, str(call.required("path")), int(call.required("line")),
                                           body, None)
    call.hub.on_event("pull_request_review_comment", "created", repo, actor, pull=pull, comment=comment)
    return 201, call.urls.review_comment(repo, pull, comment)


def reply_to_review_comment(call: Call) -> Answer:
    repo = _repo(call)
    pull = _pull(call, repo)
    comment = call.hub.reply_to_comment(pull, call.caller.actor, int(call.path_args["comment_id"]),
                                        str(call.required("body")))
    call.hub.on_event("pull_request_review_comment", "created", repo, call.caller.actor, pull=pull, comment=comment)
    return 201, call.urls.review_comment(repo, pull, comment)


def list_repo_invitations(call: Call) -> Answer:
    """The repository's pending invitations (for its administrators: the App's installation here)."""
    _require(call, "installation")
    repo = _repo(call)
    pending = [invitation for invitation in call.hub.invitations.values() if invitation.repo is repo]
    return 200, [call.urls.invitation(invitation) for invitation in pending]


def add_labels(call: Call) -> Answer:
    repo = _repo(call, write=True)
    issue = _issue(call, repo)
    given = call.body.get("labels") if isinstance(call.body, dict) else call.body
    names = [label if isinstance(label, str) else str(label.get("name")) for label in given or []]
    issue.labels += [name for name in names if name not in issue.labels]
    issue.updated_at = time.time()
    call.hub.on_event("issues", "labeled", repo, call.caller.actor, issue=issue)
    return 200, [call.urls.label(repo, name) for name in issue.labels]


def list_runs(call: Call) -> Answer:
    """Workflow runs, newest first; `branch`, `status` (completed/success/failure/…) and `head_sha` filter them."""
    repo = _repo(call)
    branch, status, head_sha = call.query.get("branch"), call.query.get("status"), call.query.get("head_sha")
    runs = [run for run in reversed(repo.runs)
            if (not branch or run.branch == branch) and (not head_sha or run.commit.sha == head_sha)
            and (not status or status in (run.status, run.conclusion))]
    per_page = min(int(call.query.get("per_page", 30)), 100)
    return 200, {"total_count": len(runs), "workflow_runs": [call.urls.workflow_run(repo, run) for run in runs[:per_page]]}


ROUTES: list[tuple[str, str, View]] = [
    ("/app", "GET", get_app),
    ("/orgs/<org>/installation", "GET", get_org_installation),
    ("/app/installations/<int:installation_id>/access_tokens", "POST", create_installation_token),
    ("/rate_limit", "GET", rate_limit_view),
    ("/user", "GET", get_user),
    ("/users/<username>", "GET", get_user_by_login),
    ("/user/repository_invitations", "GET", list_invitations),
    ("/user/repository_invitations/<int:invitation_id>", "PATCH", accept_invitation),
    ("/repos/<template_owner>/<template_repo>/generate", "POST", generate_repo),
    ("/repos/<owner>/<repo>", "GET", get_repo),
    ("/repos/<owner>/<repo>", "PATCH", update_repo),
    ("/repos/<owner>/<repo>/collaborators", "GET", list_collaborators),
    ("/repos/<owner>/<repo>/collaborators/<username>", "GET", check_collaborator),
    ("/repos/<owner>/<repo>/collaborators/<username>", "PUT", add_collaborator),
    ("/repos/<owner>/<repo>/git/ref/<path:ref>", "GET", get_ref),
    ("/repos/<owner>/<repo>/git/matching-refs/<path:ref>", "GET", matching_refs),
    ("/repos/<owner>/<repo>/git/refs", "POST", create_ref),
    ("/repos/<owner>/<repo>/contents/<path:path>", "GET", get_content),
    ("/repos/<owner>/<repo>/contents/<path:path>", "PUT", put_content),
    ("/repos/<owner>/<repo>/pulls", "GET", list_pulls),
    ("/repos/<owner>/<repo>/pulls", "POST", create_pull),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>", "GET", get_pull),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/merge", "PUT", merge_pull),
    ("/repos/<owner>/<repo>/issues", "GET", list_issues),
    ("/repos/<owner>/<repo>/issues", "POST", create_issue),
    ("/repos/<owner>/<repo>/issues/<int:issue_number>", "GET", get_issue),
    ("/repos/<owner>/<repo>/issues/<int:issue_number>", "PATCH", update_issue),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/reviews", "GET", list_reviews),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/reviews", "POST", create_review),
    ("/repos/<owner>/<repo>/issues/<int:issue_number>/labels", "POST", add_labels),
    ("/repos/<owner>/<repo>/actions/runs", "GET", list_runs),
    ("/repos/<owner>/<repo>/invitations", "GET", list_repo_invitations),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/comments", "GET", list_review_comments),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/comments", "POST", create_review_comment),
    ("/repos/<owner>/<repo>/pulls/<int:pull_number>/comments/<int:comment_id>/replies", "POST",
     reply_to_review_comment),
]


