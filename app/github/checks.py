"""The github.* checks: what the student did in the run's repository, read through the App's installation.

Reads are conditional (If-None-Match with the ETag of the last answer): polling a repository
where nothing changed costs GitHub's free 304s, not the installation's hourly budget. So each
check reads a list that answers 200 (and so has an ETag) even before the student did anything
— the collaborators, the branches matching a name, the pull requests — rather than a single
object that would answer 404 (no ETag, a full request every time) until it exists; a file is
read at the branch's commit id, an answer that never changes and is kept. Polled with nothing
changed, every check costs one free 304, except `pull_request_reviewed` (two: the pull requests,
then the reviews). GitHub trouble (down, rate-limited, refused credentials) is an error result,
so the poller tries again later and the student is told it was not their fault.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from app import current
from app.git.checks import BranchParams, FileParams, RefName
from app.github.client import GitHubApp, GitHubError, NotConfigured, NotFound, RateLimited, shared_app
from app.github.identity import confirm_login
from app.github.review import ReviewRequest, posted_review, request_review, review_key
from app.i18n import Text
from app.lessons.checks import PASSED, CheckContext, CheckParams, CheckResult, check_error, check_type, not_yet
from app.outbox.models import OutboxStatus


def _github() -> GitHubApp:
    return shared_app(current.settings())


def _repo(context: CheckContext) -> tuple[str, str]:
    owner, _, name = str(context.run_context["github_repo"]).partition("/")
    return owner, name


def _guarded(check: Callable[[Any, CheckContext], CheckResult]) -> Callable[[Any, CheckContext], CheckResult]:
    """GitHub trouble as an error result (try again later); a run without a repository as one too."""

    def run(params: Any, context: CheckContext) -> CheckResult:
        if not context.run_context.get("github_repo"):
            return check_error("github.no_repo")
        if not context.run_context.get("github_url"):  # its setup waits in the outbox (app/github/repos.py)
            return not_yet("github.repo_not_ready")
        try:
            return check(params, context)
        except NotConfigured:
            return check_error("github.not_configured")
        except RateLimited:
            return check_error("github.paused")
        except NotFound:  # the reads below are lists: a 404 is the repository itself
            return check_error("github.repo_missing", repo=context.run_context["github_repo"])
        except GitHubError:
            return check_error("github.unavailable")

    run.__name__ = check.__name__
    return run


def _branch_tip(context: CheckContext, branch: str) -> str | None:
    """The commit id the branch points at, or None: one conditional read of the refs matching its name."""
    owner, name = _repo(context)
    refs: list[Any] = _github().conditional(
        f"refs:{owner}/{name}:{branch}", f"branch {branch} of {owner}/{name}",
        lambda client, headers: client.rest.git.list_matching_refs(owner, name, f"heads/{branch}", headers=headers))
    return next((ref.object_.sha for ref in refs if ref.ref == f"refs/heads/{branch}"), None)


class NoParams(CheckParams):
    pass


@check_type("github.invitation_accepted", NoParams)
@_guarded
def invitation_accepted(params: NoParams, context: CheckContext) -> CheckResult:
    """The student's claimed account accepted the invitation: that confirms the login is theirs."""
    owner, name = _repo(context)
    login = str(context.run_context["github_login"])
    collaborators: list[Any] = _github().conditional(
        f"collaborators:{owner}/{name}", f"the collaborators of {owner}/{name}",
        lambda client, headers: client.rest.repos.list_collaborators(owner, name, headers=headers))
    if not any(str(user.login).lower() == login.lower() for user in collaborators):
        return not_yet("github.invitation_pending", login=login, url=context.run_context.get("github_url", ""))
    student_email = context.run_context.get("student_email")
    if student_email and not confirm_login(str(student_email), login):
        return not_yet("github.login_taken", login=login)
    return PASSED


@check_type("github.branch_exists", BranchParams)
@_guarded
def branch_exists(params: BranchParams, context: CheckContext) -> CheckResult:
    return PASSED if _branch_tip(context, params.name) else not_yet("github.no_branch", branch=params.name)


@check_type("github.file_on_branch", FileParams)
@_guarded
def file_on_branch(params: FileParams, context: CheckContext) -> CheckResult:
    return _file_on_branch(params, context)


def _file_on_branch(params: FileParams, context: CheckContext) -> CheckResult:
    owner, name = _repo(context)
    tip = _branch_tip(context, params.branch)
    if tip is None:
        return not_yet("github.no_branch", branch=params.branch)
    try:
        found = _github().immutable(
            f"contents:{owner}/{name}:{tip}:{params.path}", f"{params.path} in {owner}/{name}",
            lambda client: client.rest.repos.get_content(owner, name, params.path, ref=tip))
    except NotFound:
        return not_yet("github.no_file", branch=params.branch, path=params.path)
    content = getattr(found, "content", None)
    if getattr(found, "type", None) != "file" or not isinstance(content, str):  # a directory is not a file
        return not_yet("github.no_file", branch=params.branch, path=params.path)
    text = base64.b64decode(content).decode("utf-8", "replace")
    if params.contains and params.contains.casefold() not in text.casefold():
        return not_yet("github.file_content", branch=params.branch, path=params.path, text=params.contains)
    if params.matches and not re.search(params.matches, text, re.MULTILINE):
        return not_yet("github.file_content", branch=params.branch, path=params.path, text=params.matches)
    return PASSED


class PullParams(CheckParams):
    head: RefName
    base: RefName = "main"


def _pulls(context: CheckContext, params: PullParams) -> list[Any]:
    """Pull requests from `head` into `base`, newest first (at most 30: a lesson has a handful)."""
    owner, name = _repo(context)
    found: list[Any] = _github().conditional(
        f"pulls:{owner}/{name}:{params.head}:{params.base}", f"pull requests of {owner}/{name}",
        lambda client, headers: client.rest.pulls.list(owner, name, state="all", head=f"{owner}:{params.head}",
                                                       base=params.base, headers=headers))
    return found


def _by_student(pull: Any, context: CheckContext) -> bool:
    login = str(context.run_context.get("github_login", "")).lower()
    return pull.user is not None and str(pull.user.login).lower() == login


@check_type("github.pull_request_opened", PullParams)
@_guarded
def pull_request_opened(params: PullParams, context: CheckContext) -> CheckResult:
    pulls = _pulls(context, params)
    if not pulls:
        return not_yet("github.no_pull", head=params.head, base=params.base)
    if not any(_by_student(pull, context) for pull in pulls):
        return not_yet("github.pull_by_other", head=params.head, login=context.run_context.get("github_login", ""))
    return PASSED


@check_type("github.pull_request_merged", PullParams)
@_guarded
def pull_request_merged(params: PullParams, context: CheckContext) -> CheckResult:
    pulls = [pull for pull in _pulls(context, params) if _by_student(pull, context)]
    if not pulls:
        return not_yet("github.no_pull", head=params.head, base=params.base)
    if not any(pull.merged_at is not None for pull in pulls):
        return not_yet("github.pull_not_merged", number=pulls[0].number)
    return PASSED


class IssueParams(CheckParams):
    title_contains: str | None = Field(default=None, max_length=200)


@check_type("github.issue_closed", IssueParams)
@_guarded
def issue_closed(params: IssueParams, context: CheckContext) -> CheckResult:
    """An issue (not a pull request) of the run's repository was closed as completed."""
    owner, name = _repo(context)
    issues: list[Any] = _github().conditional(
        f"closed-issues:{owner}/{name}", f"issues of {owner}/{name}",
        lambda client, headers: client.rest.issues.list_for_repo(owner, name, state="closed", headers=headers))
    wanted = (params.title_contains or "").casefold()
    for issue in issues:
        is_pull = bool(issue.pull_request)  # absent (githubkit's falsy UNSET) for an issue
        if not is_pull and issue.state_reason in ("completed", None) and wanted in issue.title.casefold():
            return PASSED
    return not_yet("github.no_issue_closed")


class ReviewParams(PullParams):
    state: Literal["approved", "changes_requested", "commented"] = "approved"


@check_type("github.pull_request_reviewed", ReviewParams)
@_guarded
def pull_request_reviewed(params: ReviewParams, context: CheckContext) -> CheckResult:
    """The student's pull request from `head` got a review in that state (from someone else, for approvals)."""
    owner, name = _repo(context)
    pulls = [pull for pull in _pulls(context, params) if _by_student(pull, context)]
    if not pulls:
        return not_yet("github.no_pull", head=params.head, base=params.base)
    number = pulls[0].number
    reviews: list[Any] = _github().conditional(
        f"reviews:{owner}/{name}:{number}", f"reviews of #{number} in {owner}/{name}",
        lambda client, headers: client.rest.pulls.list_reviews(owner, name, number, headers=headers))
    if any(str(review.state).lower() == params.state for review in reviews):
        return PASSED
    return not_yet("github.no_review", number=number, state=params.state.replace("_", " "))


class LabelParams(CheckParams):
    label: str = Field(min_length=1, max_length=50)


@check_type("github.label_added", LabelParams)
@_guarded
def label_added(params: LabelParams, context: CheckContext) -> CheckResult:
    """An issue or pull request of the run's repository has the label."""
    owner, name = _repo(context)
    issues: list[Any] = _github().conditional(
        f"issues:{owner}/{name}", f"issues of {owner}/{name}",
        lambda client, headers: client.rest.issues.list_for_repo(owner, name, state="all", headers=headers))
    wanted = params.label.casefold()
    for issue in issues:
        names = [label if isinstance(label, str) else str(label.name) for label in issue.labels]
        if any(label.casefold() == wanted for label in names):
            return PASSED
    return not_yet("github.no_label", label=params.label)


class WorkflowParams(CheckParams):
    branch: RefName = "main"
    workflow: str | None = Field(default=None, max_length=200,
                                 description="The workflow file, e.g. .github/workflows/ci.yml; any if unset.")


@check_type("github.workflow_succeeded", WorkflowParams)
@_guarded
def workflow_succeeded(params: WorkflowParams, context: CheckContext) -> CheckResult:
    """The newest run (of that workflow) on the branch finished with success."""
    owner, name = _repo(context)
    found: Any = _github().conditional(
        f"runs:{owner}/{name}:{params.branch}", f"workflow runs of {owner}/{name}",
        lambda client, headers: client.rest.actions.list_workflow_runs_for_repo(owner, name, branch=params.branch,
                                                                                headers=headers))
    runs = [run for run in found.workflow_runs if params.workflow is None or run.path == params.workflow]
    if not runs:
        return not_yet("github.no_workflow_run", branch=params.branch)
    latest = runs[0]
    if latest.status != "completed":
        return not_yet("github.workflow_running", branch=params.branch, url=latest.html_url)
    if latest.conclusion != "success":
        return not_yet("github.workflow_failed", branch=params.branch, conclusion=latest.conclusion, url=latest.html_url)
    return PASSED


class Said(CheckParams):
    """A text the bot says on GitHub, in the student's language."""

    ru: str = Field(min_length=1, max_length=2000)
    en: str = Field(min_length=1, max_length=2000)


class ReviewCommentParams(PullParams):
    path: str = Field(min_length=1, max_length=300, description="The file the bot comments on.")
    line: int = Field(default=1, ge=1, le=10_000, description="The line of that file on the head branch.")
    comment: Said = Field(description="What the bot asks for in its comment.")
    contains: str | None = Field(default=None, max_length=200,
                                 description="Once fixed, the file on the head branch contains this text.")

    @field_validator("path")
    @classmethod
    def _inside_repository(cls, value: str) -> str:
        return FileParams(path=value).path  # the same rule as any check's file


@check_type("github.review_comment_answered", ReviewCommentParams)
@_guarded
def review_comment_answered(params: ReviewCommentParams, context: CheckContext) -> CheckResult:
    """The student answered the bot's review comment in its thread (and pushed the fix, if ``contains``).

    The bot requests the change itself: the first time this runs on a run with the student's pull
    request, it queues the review (app/github/review.py), in the caller's transaction.
    """
    pulls = [pull for pull in _pulls(context, params) if _by_student(pull, context)]
    if not pulls:
        return not_yet("github.no_pull", head=params.head, base=params.base)
    key = review_key(params.head, params.path, params.line)
    posted = posted_review(context.run_context, key)
    if posted is None:
        request = ReviewRequest(key, pulls[0].number, params.path, params.line, params.comment,
                                Text("github.review_summary", path=params.path, line=params.line))
        if request_review(context.run_context, request) == OutboxStatus.FAILED:
            return check_error("github.review_failed", number=pulls[0].number)
        return not_yet("github.review_coming", number=pulls[0].number)
    if not _answered(context, int(posted["number"]), int(posted["comment_id"])):
        return not_yet("github.review_unanswered", url=posted["url"], path=params.path)
    if params.contains:
        fixed = _file_on_branch(FileParams(path=params.path, branch=params.head, contains=params.contains), context)
        if not fixed.passed:
            return not_yet("github.review_not_fixed", path=params.path, branch=params.head, text=params.contains)
    return PASSED


def _answered(context: CheckContext, number: int, comment_id: int) -> bool:
    """A reply by the student in the comment's thread."""
    owner, name = _repo(context)
    login = str(context.run_context.get("github_login", "")).lower()
    comments: list[Any] = _github().conditional(
        f"review-comments:{owner}/{name}:{number}", f"review comments of #{number} in {owner}/{name}",
        lambda client, headers: client.rest.pulls.list_review_comments(owner, name, number, per_page=100,
                                                                       headers=headers))
    return any(comment.in_reply_to_id == comment_id and comment.user is not None
               and str(comment.user.login).lower() == login for comment in comments)
