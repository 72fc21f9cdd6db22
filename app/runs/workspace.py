"""Setting up a run's platform side: the Git platform hosts a repository per run."""

from __future__ import annotations

import time
from typing import Any

from app.git.repos import HostedRepo, create_repo, hosted_repo
from app.i18n import Text
from app.lessons.platforms import Prepared
from app.lessons.schema import Lesson
from app.settings import Settings


class PlatformWorkspace:
    """The real :class:`~app.lessons.platforms.Workspace`, by lesson platform."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def prepare(self, lesson: Lesson, student_email: str) -> Prepared:
        if lesson.platform == "zulip":
            # Zulip checks look at what the student did after this moment, as this Zulip user.
            return Prepared({"zulip_email": student_email, "started_ts": time.time()})
        if lesson.platform == "github":
            from app.github.repos import prepare_repository

            return prepare_repository(self.settings, lesson, student_email)
        if lesson.platform != "git":
            return Prepared()
        repo = create_repo(
            self.settings.git_root, lesson.id, student_email,
            hook_secret=self.settings.git_hook_secret.get_secret_value(),
            hook_url=self.settings.hook_url, public_url=self.settings.git_public_url,
            quota_bytes=self.settings.git_repo_quota_bytes,
        )
        context = {"repo_name": repo.name, "repo_path": str(repo.path), "clone_url": repo.clone_url}
        return Prepared(context, _clone_texts(repo))

    def recall(self, lesson: Lesson, context: dict[str, Any]) -> list[Text]:
        if lesson.platform == "github" and context.get("github_repo"):
            from app.github.repos import repository_texts

            return repository_texts(context)
        if lesson.platform != "git" or not context.get("repo_name"):
            return []
        repo = hosted_repo(self.settings.git_root, str(context["repo_name"]),
                           hook_secret=self.settings.git_hook_secret.get_secret_value(),
                           public_url=self.settings.git_public_url)
        return _clone_texts(repo)

    def link_url(self, student_email: str) -> str | None:
        from app.google.linking import student_link_url

        return student_link_url(self.settings, student_email)

    def link_github(self, student_email: str, login: str) -> list[Text]:
        from app.github.identity import claim_login

        return [claim_login(student_email, login)]


def _clone_texts(repo: HostedRepo) -> list[Text]:
    texts = [Text("git.clone", url=repo.clone_url)]
    if repo.user and repo.password:
        texts.append(Text("git.clone_credentials", user=repo.user, password=repo.password))
    return texts
