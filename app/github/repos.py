"""Per-run repositories: generated in the organization from the lesson's template, the student invited.

A lesson's template is the organization's repository `<lesson id>-template` (a template
repository: Settings → Template repository). Each run gets its own private repository,
`<lesson id>-<login>-<6 hex>`, so a restarted lesson starts clean.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from app.github.client import GitHubError, NotConfigured, NotFound, shared_app
from app.github.identity import claimed_login
from app.i18n import Text
from app.lessons.platforms import NotReady, Prepared
from app.lessons.schema import Lesson
from app.settings import Settings


def template_name(lesson: Lesson) -> str:
    return f"{lesson.id}-template"


def prepare_repository(settings: Settings, lesson: Lesson, student_email: str) -> Prepared:
    """Generate the run's repository and invite the student's claimed login; NotReady says why not."""
    login = claimed_login(student_email)
    if login is None:
        raise NotReady(Text("github.link_first"))
    try:
        github = shared_app(settings)
        org, name = github.org, f"{lesson.id}-{login}-{secrets.token_hex(3)}"
        # Asked first, so that a mistyped login leaves no repository behind.
        github.call(f"the GitHub user {login}", lambda client: client.rest.users.get_by_username(login))
        repo = github.call(f"the repository {org}/{name}", lambda client: client.rest.repos.create_using_template(
            org, template_name(lesson), owner=org, name=name, private=True,
            description=f"Lessonbot: {lesson.id} for {login}")).parsed_data
        github.call(f"the invitation of {login}", lambda client: client.rest.repos.add_collaborator(
            org, name, login, permission="push"))
    except NotConfigured:
        raise NotReady(Text("github.not_configured")) from None
    except NotFound as missing:
        key = "github.no_such_user" if "GitHub user" in str(missing) else "github.no_template"
        raise NotReady(Text(key, login=login, template=template_name(lesson))) from None
    except GitHubError:
        raise NotReady(Text("github.setup_failed")) from None
    context = {"github_repo": repo.full_name, "github_login": login, "student_email": student_email,
               "github_url": repo.html_url,
               "clone_url": repo.clone_url, "started_ts": time.time()}
    return Prepared(context, repository_texts(context))


def repository_texts(context: dict[str, Any]) -> list[Text]:
    return [Text("github.repo_ready", url=context["github_url"], login=context["github_login"],
                 clone_url=context["clone_url"])]
