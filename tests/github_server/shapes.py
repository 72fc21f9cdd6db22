"""GitHub's JSON for the server's objects, field for field as api.github.com answers.

GitHub's objects carry many URL templates; they are derived from one base here, as
GitHub derives them. `Urls.api` is where clients send requests; `Urls.html` stands in
for github.com.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

from .models import (
    Account,
    App,
    Commit,
    Installation,
    Invitation,
    Issue,
    Push,
    Repo,
    Review,
    ReviewComment,
    WorkflowRun,
    git_sha,
    now_iso,
)

Json = dict[str, Any]

REPO_URL_TEMPLATES = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}", "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
    "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
    "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags", "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def node_id(kind: str, number: int) -> str:
    """An opaque global id, shaped like GitHub's."""
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Urls:
    api: str
    html: str

    def user(self, account: Account) -> Json:
        """simple-user."""
        api = f"{self.api}/users/{account.login}"
        return {
            "login": account.login, "id": account.id, "node_id": node_id("U", account.id),
            "avatar_url": f"{self.html}/avatars/{account.id}", "gravatar_id": "", "url": api,
            "html_url": f"{self.html}/{account.login}", "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}", "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": account.type, "site_admin": False,
            "user_view_type": "public",
        }

    def private_user(self, account: Account) -> Json:
        """private-user: what GET /user tells a user about themselves."""
        return {
            **self.user(account), "user_view_type": "private", "name": account.name, "company": None, "blog": "",
            "location": None, "email": account.email, "hireable": None, "bio": None, "twitter_username": None,
            "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
            "created_at": now_iso(account.created_at), "updated_at": now_iso(account.created_at),
            "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0,
            "collaborators": 0, "two_factor_authentication": True,
        }

    def public_user(self, account: Account) -> Json:
        """public-user: what GET /users/{username} tells anyone."""
        private = self.private_user(account)
        hidden = ("private_gists", "total_private_repos", "owned_private_repos", "disk_usage", "collaborators",
                  "two_factor_authentication")
        return {**{key: value for key, value in private.items() if key not in hidden}, "user_view_type": "public"}

    def repository(self, repo: Repo) -> Json:
        """full-repository (a superset of repository and minimal-repository)."""
        api = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}"
        open_issues = sum(1 for issue in repo.issues.values() if issue.state == "open")
        data: Json = {
            "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name, "full_name": repo.full_name,
            "owner": self.user(repo.owner), "private": repo.private, "html_url": html, "description": repo.description,
            "fork": False, "url": api, **{key: api + suffix for key, suffix in REPO_URL_TEMPLATES.items()},
            "git_url": f"{html}.git", "ssh_url": f"git@github.example:{repo.full_name}.git", "clone_url": f"{html}.git",
            "svn_url": html, "mirror_url": None, "homepage": None, "language": None, "forks_count": 0, "forks": 0,
            "stargazers_count": 0, "watchers_count": 0, "watchers": 0, "size": 0, "default_branch": repo.default_branch,
            "open_issues_count": open_issues, "open_issues": open_issues, "is_template": repo.is_template,
            "topics": [], "has_issues": True, "has_projects": False, "has_wiki": False, "has_pages": False,
            "has_downloads": True, "has_discussions": False, "archived": repo.archived, "disabled": False,
            "visibility": "private" if repo.private else "public", "pushed_at": now_iso(repo.pushed_at),
            "created_at": now_iso(repo.created_at), "updated_at": now_iso(repo.updated_at), "license": None,
            "allow_forking": False, "web_commit_signoff_required": False, "network_count": 0, "subscribers_count": 0,
        }
        if repo.template_of is not None:
            data["template_repository"] = self._template(repo.template_of)
        return data

    def _template(self, repo: Repo) -> Json:
        data = self.repository(repo)
        data.pop("template_repository", None)
        return data

    def collaborator(self, account: Account) -> Json:
        """collaborator: a user with access to the repository (students are invited with push, role write)."""
        permissions = {"pull": True, "triage": True, "push": True, "maintain": False, "admin": False}
        return {**self.user(account), "permissions": permissions, "role_name": "write"}

    def git_ref(self, repo: Repo, branch: str) -> Json:
        sha = repo.branches[branch]
        api = f"{self.api}/repos/{repo.full_name}/git"
        return {"ref": f"refs/heads/{branch}", "node_id": node_id("REF", zlib.crc32(branch.encode())),
                "url": f"{api}/refs/heads/{branch}",
                "object": {"type": "commit", "sha": sha, "url": f"{api}/commits/{sha}"}}

    def content_file(self, repo: Repo, path: str, data: bytes, ref: str) -> Json:
        sha = git_sha("blob", data)
        api = f"{self.api}/repos/{repo.full_name}"
        links = {"self": f"{api}/contents/{path}?ref={ref}", "git": f"{api}/git/blobs/{sha}",
                 "html": f"{self.html}/{repo.full_name}/blob/{ref}/{path}"}
        return {
            "type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1], "path": path,
            "content": base64.encodebytes(data).decode(), "sha": sha, "url": links["self"], "git_url": links["git"],
            "html_url": links["html"], "download_url": f"{self.html}/raw/{repo.full_name}/{ref}/{path}", "_links": links,
        }

    def file_commit(self, repo: Repo, path: str, commit: Commit, branch: str) -> Json:
        content = self.content_file(repo, path, commit.tree[path], branch)
        content.pop("content")
        content.pop("encoding")
        api = f"{self.api}/repos/{repo.full_name}"
        person = {"date": now_iso(commit.at), "name": commit.author.name or commit.author.login,
                  "email": f"{commit.author.id}+{commit.author.login}@users.noreply.github.com"}
        return {"content": content, "commit": {
            "sha": commit.sha, "node_id": node_id("C", int(commit.sha[:8], 16)), "url": f"{api}/git/commits/{commit.sha}",
            "html_url": f"{self.html}/{repo.full_name}/commit/{commit.sha}", "author": person, "committer": person,
            "message": commit.message, "tree": {"url": f"{api}/git/trees/{commit.sha}", "sha": commit.sha},
            "parents": [{"url": f"{api}/git/commits/{p}", "html_url": f"{self.html}/{repo.full_name}/commit/{p}",
                         "sha": p} for p in commit.parents],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        }}

    def invitation(self, invitation: Invitation) -> Json:
        repo = invitation.repo
        return {
            "id": invitation.id, "node_id": node_id("RI", invitation.id), "repository": self.repository(repo),
            "invitee": self.user(invitation.invitee), "inviter": self.user(invitation.inviter),
            "permissions": invitation.permission, "created_at": now_iso(invitation.created_at), "expired": False,
            "url": f"{self.api}/user/repository_invitations/{invitation.id}",
            "html_url": f"{self.html}/{repo.full_name}/invitations",
        }

    def label(self, repo: Repo, name: str) -> Json:
        return {"id": zlib.crc32(f"{repo.id}:{name}".encode()), "node_id": node_id("L", zlib.crc32(name.encode())),
                "url": f"{self.api}/repos/{repo.full_name}/labels/{name}", "name": name, "description": None,
                "color": "ededed", "default": False,
                # Not in the 2022-11-28 description; githubkit's 2026-03-10 models require them.
                "archived_at": None, "archived_by": None}

    def issue(self, repo: Repo, issue: Issue) -> Json:
        api = f"{self.api}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.is_pull else "issues"
        data: Json = {
            "id": issue.id, "node_id": node_id("I", issue.id), "url": api,
            "repository_url": f"{self.api}/repos/{repo.full_name}", "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments", "events_url": f"{api}/events",
            "html_url": f"{self.html}/{repo.full_name}/{kind}/{issue.number}", "number": issue.number,
            "state": issue.state, "state_reason": issue.state_reason, "title": issue.title, "body": issue.body,
            "user": self.user(issue.user), "labels": [self.label(repo, name) for name in issue.labels],
            "assignee": None, "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
            "comments": 0, "closed_at": now_iso(issue.closed_at) if issue.closed_at else None,
            "created_at": now_iso(issue.created_at), "updated_at": now_iso(issue.updated_at),
            "closed_by": self.user(issue.closed_by) if issue.closed_by else None,
            "author_association": association(repo, issue.user), "reactions": reactions(api),
        }
        if issue.is_pull:
            pulls = f"{self.api}/repos/{repo.full_name}/pulls/{issue.number}"
            data["pull_request"] = {"url": pulls, "html_url": data["html_url"], "diff_url": data["html_url"] + ".diff",
                                    "patch_url": data["html_url"] + ".patch",
                                    "merged_at": now_iso(issue.merged_at) if issue.merged_at else None}
        return data

    def pull_simple(self, repo: Repo, pull: Issue) -> Json:
        """pull-request-simple: as GET /repos/{owner}/{repo}/pulls lists them."""
        api = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}/pull/{pull.number}"
        url = f"{api}/pulls/{pull.number}"
        assert pull.head is not None and pull.base is not None
        links = {"self": url, "html": html, "issue": f"{api}/issues/{pull.number}",
                 "comments": f"{api}/issues/{pull.number}/comments", "review_comments": f"{url}/comments",
                 "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{url}/commits",
                 "statuses": f"{api}/statuses/{pull.head_sha}"}
        issue = self.issue(repo, pull)
        return {
            "url": url, "id": pull.id, "node_id": node_id("PR", pull.id), "html_url": html, "diff_url": html + ".diff",
            "patch_url": html + ".patch", "issue_url": links["issue"], "commits_url": links["commits"],
            "review_comments_url": links["review_comments"], "review_comment_url": links["review_comment"],
            "comments_url": links["comments"], "statuses_url": links["statuses"], "number": pull.number,
            "state": pull.state, "locked": False, "title": pull.title, "user": issue["user"], "body": pull.body,
            "labels": issue["labels"], "milestone": None, "active_lock_reason": None,
            "created_at": issue["created_at"], "updated_at": issue["updated_at"], "closed_at": issue["closed_at"],
            "merged_at": now_iso(pull.merged_at) if pull.merged_at else None, "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": self._end(repo, pull.head, pull.head_sha), "base": self._end(repo, pull.base, None),
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": issue["author_association"], "auto_merge": None, "draft": False,
        }

    def pull(self, repo: Repo, pull: Issue) -> Json:
        """pull-request: one pull request in full."""
        merged = pull.merged_at is not None
        return {
            **self.pull_simple(repo, pull), "merged": merged, "mergeable": None if merged else pull.state == "open",
            "rebaseable": None, "mergeable_state": "clean" if pull.state == "open" else "unknown",
            "merged_by": self.user(pull.merged_by) if pull.merged_by else None, "comments": 0, "review_comments": 0,
            "maintainer_can_modify": False, "commits": 1, "additions": 0, "deletions": 0, "changed_files": 0,
        }

    def review(self, repo: Repo, pull: Issue, review: Review) -> Json:
        """pull-request-review."""
        pull_url = f"{self.api}/repos/{repo.full_name}/pulls/{pull.number}"
        html = f"{self.html}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{review.id}"
        return {
            "id": review.id, "node_id": node_id("PRR", review.id), "user": self.user(review.user), "body": review.body,
            "state": review.state, "html_url": html, "pull_request_url": pull_url, "commit_id": review.commit_id,
            "submitted_at": now_iso(review.submitted_at), "author_association": association(repo, review.user),
            "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
        }

    def review_comment(self, repo: Repo, pull: Issue, comment: ReviewComment) -> Json:
        """pull-request-review-comment."""
        api = f"{self.api}/repos/{repo.full_name}/pulls"
        pull_url = f"{api}/{pull.number}"
        html = f"{self.html}/{repo.full_name}/pull/{pull.number}#discussion_r{comment.id}"
        data: Json = {
            "url": f"{api}/comments/{comment.id}", "pull_request_review_id": comment.review_id, "id": comment.id,
            "node_id": node_id("PRRC", comment.id), "diff_hunk": f"@@ -0,0 +1,{comment.line} @@",
            "path": comment.path, "commit_id": comment.commit_id, "original_commit_id": comment.commit_id,
            "user": self.user(comment.user), "body": comment.body, "created_at": now_iso(comment.created_at),
            "updated_at": now_iso(comment.created_at), "html_url": html, "pull_request_url": pull_url,
            "author_association": association(repo, comment.user), "line": comment.line, "position": comment.line,
            "original_position": comment.line, "reactions": reactions(f"{api}/comments/{comment.id}"),
            "original_line": comment.line, "side": "RIGHT", "start_line": None, "original_start_line": None,
            "start_side": None, "subject_type": "line",
            "_links": {"self": {"href": f"{api}/comments/{comment.id}"}, "html": {"href": html},
                       "pull_request": {"href": pull_url}},
        }
        if comment.in_reply_to_id is not None:
            data["in_reply_to_id"] = comment.in_reply_to_id
        return data

    def workflow_run(self, repo: Repo, run: WorkflowRun) -> Json:
        """workflow-run."""
        api = f"{self.api}/repos/{repo.full_name}/actions/runs/{run.id}"
        commit = run.commit
        person = {"name": commit.author.name or commit.author.login,
                  "email": f"{commit.author.id}+{commit.author.login}@users.noreply.github.com"}
        workflow_id = zlib.crc32(run.path.encode())
        return {
            "id": run.id, "node_id": node_id("WFR", run.id), "name": run.path.rsplit("/", 1)[-1],
            "head_branch": run.branch, "head_sha": commit.sha, "path": run.path, "run_number": run.run_number,
            "run_attempt": 1, "display_title": commit.message.splitlines()[0] if commit.message else "",
            "event": run.event, "status": run.status, "conclusion": run.conclusion, "workflow_id": workflow_id,
            "url": api, "html_url": f"{self.html}/{repo.full_name}/actions/runs/{run.id}", "pull_requests": [],
            "created_at": now_iso(run.created_at), "updated_at": now_iso(run.created_at),
            "run_started_at": now_iso(run.created_at), "actor": self.user(commit.author),
            "triggering_actor": self.user(commit.author), "jobs_url": f"{api}/jobs", "logs_url": f"{api}/logs",
            "check_suite_url": f"{self.api}/repos/{repo.full_name}/check-suites/{run.id}",
            "artifacts_url": f"{api}/artifacts", "cancel_url": f"{api}/cancel", "rerun_url": f"{api}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{self.api}/repos/{repo.full_name}/actions/workflows/{workflow_id}",
            "head_commit": {"id": commit.sha, "tree_id": commit.sha, "message": commit.message,
                            "timestamp": now_iso(commit.at), "author": person, "committer": person},
            "repository": self.repository(repo), "head_repository": self.repository(repo),
        }

    def webhook(self, event: str, action: str | None, repo: Repo, sender: Account, installation: Installation, *,
                pull: Issue | None = None, issue: Issue | None = None, review: Review | None = None,
                comment: ReviewComment | None = None, member: Account | None = None, push: Push | None = None,
                changes: Json | None = None) -> Json:
        """A webhook delivery's payload: the event's objects, the repository, who did it, the installation."""
        payload: Json = {"action": action} if action is not None else {}
        if changes is not None:
            payload["changes"] = changes
        if pull is not None:
            payload["number"] = pull.number
            payload["pull_request"] = self.pull(repo, pull)
        if review is not None and pull is not None:
            payload["review"] = self.review(repo, pull, review)
        if comment is not None and pull is not None:
            payload["comment"] = self.review_comment(repo, pull, comment)
        if issue is not None:
            payload["issue"] = self.issue(repo, issue)
        if member is not None:
            payload["member"] = self.user(member)
        if push is not None:
            payload.update(self.push(repo, push, sender))
        # Webhooks describe the template_repository's texts as never null; the repository alone is enough here.
        repository = {key: value for key, value in self.repository(repo).items() if key != "template_repository"}
        return {**payload, "repository": repository, "sender": self.user(sender),
                "installation": {"id": installation.id, "node_id": node_id("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u",
                                                                           installation.id)}}

    def push(self, repo: Repo, push: Push, pusher: Account) -> Json:
        """What a push event says beyond the common fields."""
        html = f"{self.html}/{repo.full_name}"
        commits = [self._push_commit(repo, commit) for commit in push.commits]
        return {"ref": f"refs/heads/{push.branch}", "before": push.before, "after": push.after,
                "created": push.created, "deleted": False, "forced": False, "base_ref": None,
                "compare": f"{html}/compare/{push.before[:12]}...{push.after[:12]}", "commits": commits,
                "head_commit": commits[-1] if commits else None,
                "pusher": {"name": pusher.login, "email": f"{pusher.id}+{pusher.login}@users.noreply.github.com"}}

    def _push_commit(self, repo: Repo, commit: Commit) -> Json:
        person = {"name": commit.author.name or commit.author.login, "username": commit.author.login,
                  "email": f"{commit.author.id}+{commit.author.login}@users.noreply.github.com"}
        parent = repo.commits.get(commit.parents[0]) if commit.parents else None
        before = parent.tree if parent else {}
        return {"id": commit.sha, "tree_id": commit.sha, "distinct": True, "message": commit.message,
                "timestamp": now_iso(commit.at), "url": f"{self.html}/{repo.full_name}/commit/{commit.sha}",
                "author": person, "committer": person,
                "added": sorted(path for path in commit.tree if path not in before),
                "modified": sorted(path for path in commit.tree if path in before and before[path] != commit.tree[path]),
                "removed": sorted(path for path in before if path not in commit.tree)}

    def _end(self, repo: Repo, branch: str, sha: str | None) -> Json:
        return {"label": f"{repo.owner.login}:{branch}", "ref": branch, "sha": sha or repo.branches.get(branch, ""),
                "user": self.user(repo.owner), "repo": self.repository(repo)}

    def app(self, app: App) -> Json:
        """integration."""
        return {
            "id": app.id, "slug": app.slug, "node_id": node_id("A", app.id), "client_id": f"Iv23{app.id:012d}",
            "owner": self.user(app.owner), "name": app.name, "description": "Lessonbot test App",
            "external_url": self.html, "html_url": f"{self.html}/apps/{app.slug}",
            "created_at": now_iso(app.created_at), "updated_at": now_iso(app.created_at),
            "permissions": dict(app.permissions), "events": list(app.events),
        }

    def installation(self, installation: Installation) -> Json:
        app, account = installation.app, installation.account
        return {
            "id": installation.id, "account": self.user(account), "repository_selection": "all",
            "access_tokens_url": f"{self.api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{self.html}/organizations/{account.login}/settings/installations/{installation.id}",
            "app_id": app.id, "app_slug": app.slug, "target_id": account.id, "target_type": account.type,
            "permissions": dict(app.permissions), "events": list(app.events),
            "created_at": now_iso(installation.created_at), "updated_at": now_iso(installation.created_at),
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": None, "suspended_at": None,
        }


def reactions(url: str) -> Json:
    """reaction-rollup: none yet."""
    return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0, "heart": 0,
            "hooray": 0, "eyes": 0, "rocket": 0}


def association(repo: Repo, account: Account) -> str:
    """author_association: how `account` is related to the repository."""
    if account.id == repo.owner.id:
        return "OWNER"
    if account.login in repo.collaborators:
        return "COLLABORATOR"
    return "NONE"
