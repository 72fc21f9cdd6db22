"""Per-run repositories: generated in the organization from the lesson's template, the student invited.

A lesson's template is the organization's repository `<lesson id>-template` (a template
repository: Settings → Template repository). Each run gets its own private repository,
`<lesson id>-<login>-<6 hex>`, so a restarted lesson starts clean.

Starting a lesson only names the repository and queues its setup in the outbox, in the
transaction that creates the run: GitHub being down or rate-limited at `start` never loses
the start. The outbox handler (app/github/delivery.py) calls :func:`set_up`, then sends the
student the link. Setting up is idempotent by the name chosen at start: a repository of that
name generated from the lesson's template is the one an earlier attempt made, and a login
already invited to it (or already a collaborator) is not invited again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.db import db, utcnow
from app.github.client import GitHubApp, GitHubError, NotFound
from app.github.identity import claimed_login
from app.i18n import Text
from app.lessons.platforms import NotReady, Prepared
from app.lessons.schema import Lesson
from app.outbox.models import OutboxItem, OutboxKind, OutboxStatus
from app.settings import Settings
from app.students.models import Student


def template_name(lesson_id: str) -> str:
    return f"{lesson_id}-template"


def prepare_repository(settings: Settings, lesson: Lesson, student_email: str) -> Prepared:
    """Name the run's repository and queue its setup (caller's transaction); NotReady says why not."""
    if not settings.has_github:
        raise NotReady(Text("github.not_configured"))
    login = claimed_login(student_email)
    student_id = db.session.scalar(sa.select(Student.id).where(Student.email == student_email.strip().lower()))
    if login is None or student_id is None:
        raise NotReady(Text("github.link_first"))
    full_name = f"{settings.github_org}/{lesson.id}-{login}-{secrets.token_hex(3)}"
    payload = {"repo": full_name, "template": template_name(lesson.id), "login": login, "lesson": lesson.id}
    db.session.add(OutboxItem(kind=OutboxKind.GITHUB_REPO, student_id=student_id, payload=payload,
                              dedupe_key=f"github-repo:{full_name}"[:128], status=OutboxStatus.PENDING,
                              next_attempt_at=utcnow()))
    context = {"github_repo": full_name, "github_login": login, "student_email": student_email,
               "started_ts": time.time()}
    return Prepared(context, repository_texts(context))


def repository_texts(context: dict[str, Any]) -> list[Text]:
    """The link once the repository is ready; until then, that it is being prepared."""
    if not context.get("github_url"):
        return [Text("github.repo_preparing", login=context.get("github_login", ""))]
    return [Text("github.repo_ready", url=context["github_url"], login=context["github_login"],
                 clone_url=context["clone_url"])]


class SetupFailed(Exception):
    """The repository cannot be set up as asked; trying again will not help. ``text`` tells the student."""

    def __init__(self, reason: str, text: Text, *, students_mistake: bool) -> None:
        super().__init__(reason)
        self.text, self.students_mistake = text, students_mistake


@dataclass(frozen=True)
class Ready:
    """The repository as GitHub describes it, for the run's context."""

    full_name: str
    html_url: str
    clone_url: str


def set_up(github: GitHubApp, payload: dict[str, Any]) -> Ready:
    """Generate the repository (unless an earlier attempt did) and invite the login (unless already invited)."""
    org, _, name = str(payload["repo"]).partition("/")
    login, template = str(payload["login"]), str(payload["template"])
    try:
        # Asked first, so that a mistyped login leaves no repository behind.
        github.call(f"the GitHub user {login}", lambda client: client.rest.users.get_by_username(login))
    except NotFound:
        raise SetupFailed(f"no GitHub user {login}", Text("github.no_such_user", login=login),
                          students_mistake=True) from None
    repo, existed = _generate(github, org, name, template, login, str(payload.get("lesson", "")))
    if not (existed and _invited(github, org, name, login)):
        github.call(f"the invitation of {login}",
                    lambda client: client.rest.repos.add_collaborator(org, name, login, permission="push"))
    return Ready(repo.full_name, repo.html_url, repo.clone_url)


def _generate(github: GitHubApp, org: str, name: str, template: str, login: str, lesson_id: str) -> tuple[Any, bool]:
    """The repository and whether it existed already (made by an earlier attempt whose answer was lost)."""
    try:
        created = github.call(f"the repository {org}/{name}", lambda client: client.rest.repos.create_using_template(
            org, template, owner=org, name=name, private=True, description=f"Lessonbot: {lesson_id} for {login}"))
        return created.parsed_data, False
    except NotFound:
        raise SetupFailed(f"no template repository {org}/{template}", Text("github.no_template", template=template),
                          students_mistake=False) from None
    except GitHubError as error:
        if error.status != 422:  # GitHub's answer to a name that exists
            raise
    existing = github.call(f"the repository {org}/{name}", lambda client: client.rest.repos.get(org, name)).parsed_data
    source = getattr(existing, "template_repository", None)
    if not source or str(source.full_name).lower() != f"{org}/{template}".lower():
        raise SetupFailed(f"{org}/{name} exists and was not generated from {template}", Text("github.setup_failed"),
                          students_mistake=False)
    return existing, True


def _invited(github: GitHubApp, org: str, name: str, login: str) -> bool:
    """The login is a collaborator of the repository already, or has its invitation pending."""
    try:
        github.call(f"{login} on {org}/{name}", lambda client: client.rest.repos.check_collaborator(org, name, login))
        return True
    except NotFound:
        pass
    pending = github.call(f"the invitations of {org}/{name}",
                          lambda client: client.rest.repos.list_invitations(org, name)).parsed_data
    return any(invitation.invitee is not None and invitation.invitee.login.lower() == login.lower()
               for invitation in pending)
