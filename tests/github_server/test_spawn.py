"""The server in its own process, steered through `/_test/*`."""

from __future__ import annotations

from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from .spawn import SpawnedGitHubTestServer


def test_the_spawned_server_serves_the_app_and_takes_faults() -> None:
    with SpawnedGitHubTestServer(students=1) as gh:
        full_name = gh.add_template("tpl", {"a.txt": b"a"})
        auth = AppInstallationAuthStrategy(gh.app_id, gh.private_key_pem.decode(), gh.installation_id)
        bot = GitHub(auth, base_url=gh.url, http_cache=False, auto_retry=False, timeout=5,
                     cache_strategy=MemCacheStrategy())
        assert bot.rest.repos.get(*full_name.split("/")).parsed_data.is_template
        gh.script_faults([503], endpoint="GET /repos/*")
        try:
            bot.rest.repos.get(*full_name.split("/"))
            raise AssertionError("the fault was not injected")
        except RequestFailed as failed:
            assert failed.response.status_code == 503
        state = gh.state()
        assert state["installation_used"] == 1  # the faulted answer cost nothing
        assert state["requests"] >= 3


def test_a_benchmark_seeds_repositories_pushes_branches_and_reads_the_log() -> None:
    with SpawnedGitHubTestServer(students=0) as gh:
        gh.seed_repos("b", 3, {"README.md": b"hi\n"}, uninvited=[0])
        auth = AppInstallationAuthStrategy(gh.app_id, gh.private_key_pem.decode(), gh.installation_id)
        bot = GitHub(auth, base_url=gh.url, http_cache=False, auto_retry=False, timeout=5,
                     cache_strategy=MemCacheStrategy())
        assert [user.login for user in bot.rest.repos.list_collaborators(gh.org, "b-1").parsed_data] == ["b-s1"]
        assert bot.rest.repos.list_collaborators(gh.org, "b-0").parsed_data == []
        assert bot.rest.git.list_matching_refs(gh.org, "b-2", "heads/topic").parsed_data == []
        since = gh.state()["requests"]
        gh.branch(f"{gh.org}/b-2", "topic")
        refs = bot.rest.git.list_matching_refs(gh.org, "b-2", "heads/topic").parsed_data
        assert [ref.ref for ref in refs] == ["refs/heads/topic"]
        [(method, path, status, conditional, at)] = gh.requests(since)
        assert (method, path, status, conditional) == ("GET", f"/repos/{gh.org}/b-2/git/matching-refs/heads/topic",
                                                       200, False)
        assert at > 0
