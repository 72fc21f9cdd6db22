"""The test server's GitHub behaviour: ETags and 304s, rate limits, authentication, injected faults."""

from __future__ import annotations

import time

import jwt
import pytest
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import PrimaryRateLimitExceeded, RequestError, RequestFailed, SecondaryRateLimitExceeded

from tests.zulip_server.faults import Fault

from .api import secondary_limit
from .server import GitHubTestServer, new_private_key

ORG = "lessonbot-course"


def app_client(gh: GitHubTestServer, key: bytes | None = None) -> GitHub[AppInstallationAuthStrategy]:
    auth = AppInstallationAuthStrategy(gh.app.id, (key or gh.private_key_pem).decode(), gh.installation.id)
    # A cache of its own: githubkit's default one is shared by the process and keeps JWTs and tokens.
    return GitHub(auth, base_url=gh.url, http_cache=False, auto_retry=False, timeout=5,
                  cache_strategy=MemCacheStrategy())


@pytest.fixture
def repo(gh: GitHubTestServer) -> str:
    gh.add_template("tpl", {"README.md": b"hello\n"})
    bot = app_client(gh)  # githubkit's namespaces hold their client weakly: keep it in a name
    bot.rest.repos.create_using_template(ORG, "tpl", owner=ORG, name="run-1", private=True)
    return "run-1"


def test_an_unchanged_resource_is_a_304_that_costs_nothing(gh: GitHubTestServer, repo: str) -> None:
    bot = app_client(gh)
    first = bot.rest.git.get_ref(ORG, repo, "heads/main")
    used = gh.rate_used()
    etag = first.headers["ETag"]

    again = bot.rest.git.get_ref(ORG, repo, "heads/main", headers={"If-None-Match": etag})

    assert again.status_code == 304 and again.content == b""
    assert gh.rate_used() == used
    assert again.headers["x-ratelimit-used"] == str(used)
    gh.hub.repo(ORG, repo).commit_on("main", {"README.md": b"changed\n"}, "Change", gh.org)
    changed = bot.rest.git.get_ref(ORG, repo, "heads/main", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert gh.rate_used() == used + 1


def test_a_caller_past_its_budget_gets_403_with_remaining_zero(gh: GitHubTestServer, repo: str) -> None:
    bot = app_client(gh)
    bot.rest.repos.get(ORG, repo)  # the installation token is fetched with the App's own JWT budget
    gh.set_rate_limit(2)
    bot.rest.repos.get(ORG, repo)
    last = bot.rest.repos.get(ORG, repo)
    assert last.headers["x-ratelimit-remaining"] == "0"

    with pytest.raises(PrimaryRateLimitExceeded) as refused:
        bot.rest.repos.get(ORG, repo)

    assert refused.value.response.status_code == 403
    assert refused.value.retry_after.total_seconds() > 3000
    overview = bot.rest.rate_limit.get().parsed_data
    assert overview.resources.core.remaining == 0 and overview.resources.core.used == 2


def test_installation_tokens_expire_and_githubkit_fetches_a_new_one_before(gh: GitHubTestServer) -> None:
    gh.add_template("tpl", {"README.md": b"hello\n"})
    repo = "tpl"
    gh.hub.token_lifetime_seconds = 61.0  # githubkit renews a minute before expiry
    bot = app_client(gh)
    bot.rest.repos.get(ORG, repo)
    time.sleep(1.1)  # expires_at is in whole seconds: past the renewal point now
    bot.rest.repos.get(ORG, repo)
    token_requests = [r for r in gh.request_log if r.path.endswith("/access_tokens")]
    assert len(token_requests) == 2
    old = next(iter(gh.hub.tokens.values()))
    old.expires_at = time.time() - 1
    with_old = GitHub(old.token, base_url=gh.url, http_cache=False, auto_retry=False)
    with pytest.raises(RequestFailed) as expired:
        with_old.rest.repos.get(ORG, repo)
    assert expired.value.response.status_code == 401


@pytest.mark.parametrize("wrong", ["other key", "other app id", "expired"])
def test_a_wrong_app_jwt_is_401(gh: GitHubTestServer, wrong: str) -> None:
    key, app_id = gh.private_key_pem, gh.app.id
    if wrong == "other key":
        key = new_private_key()
    elif wrong == "other app id":
        app_id = 999_999
    if wrong == "expired":
        now = int(time.time())
        token = jwt.encode({"iss": str(app_id), "iat": now - 1200, "exp": now - 600}, key, algorithm="RS256")
        client = GitHub(token, base_url=gh.url, http_cache=False, auto_retry=False)
    else:
        client = GitHub(AppAuthStrategy(app_id, key.decode()), base_url=gh.url, http_cache=False, auto_retry=False,
                        cache_strategy=MemCacheStrategy())
    with pytest.raises(RequestFailed) as refused:
        client.rest.apps.get_authenticated()
    assert refused.value.response.status_code == 401


def test_a_rotated_app_key_refuses_the_old_one(gh: GitHubTestServer) -> None:
    old = gh.private_key_pem
    gh.rotate_app_key()
    stale = GitHub(AppAuthStrategy(gh.app.id, old.decode()), base_url=gh.url, http_cache=False, auto_retry=False,
                   cache_strategy=MemCacheStrategy())
    with pytest.raises(RequestFailed):
        stale.rest.apps.get_authenticated()
    fresh = GitHub(AppAuthStrategy(gh.app.id, gh.private_key_pem.decode()), base_url=gh.url, http_cache=False,
                   auto_retry=False, cache_strategy=MemCacheStrategy())
    assert fresh.rest.apps.get_authenticated().parsed_data.slug == "lessonbot"


def test_secondary_limits_carry_retry_after(gh: GitHubTestServer, repo: str) -> None:
    bot = app_client(gh)
    bot.rest.repos.get(ORG, repo)
    gh.faults.script([secondary_limit(30), secondary_limit(5, status=429)], endpoint="GET /repos/*")
    for expected in (30, 5):
        with pytest.raises(SecondaryRateLimitExceeded) as limited:
            bot.rest.repos.get(ORG, repo)
        assert limited.value.retry_after.total_seconds() == expected


@pytest.mark.parametrize("status", [401, 403, 500, 502])
def test_injected_errors_answer_as_github(gh: GitHubTestServer, repo: str, status: int) -> None:
    bot = app_client(gh)
    bot.rest.repos.get(ORG, repo)
    gh.faults.fail_next(status=status, endpoint="GET /repos/*")
    with pytest.raises(RequestFailed) as failed:
        bot.rest.repos.get(ORG, repo)
    assert failed.value.response.status_code == status
    assert failed.value.response.json()["status"] == str(status)
    assert bot.rest.repos.get(ORG, repo).status_code == 200


def test_a_dropped_connection_is_a_request_error(gh: GitHubTestServer, repo: str) -> None:
    bot = app_client(gh)
    bot.rest.repos.get(ORG, repo)
    gh.faults.script([Fault.drop()], endpoint="GET /repos/*")
    with pytest.raises(RequestError):
        bot.rest.repos.get(ORG, repo)


def test_a_student_sees_only_repositories_they_collaborate_on(gh: GitHubTestServer, repo: str) -> None:
    mallory = gh.add_student("mallory")
    as_mallory = gh.client(mallory)
    with pytest.raises(RequestFailed) as hidden:
        as_mallory.rest.repos.get(ORG, repo)
    assert hidden.value.response.status_code == 404
    bot = app_client(gh)
    with pytest.raises(RequestFailed) as no_user:
        bot.rest.repos.add_collaborator(ORG, repo, "nobody-here")
    assert no_user.value.response.status_code == 404
