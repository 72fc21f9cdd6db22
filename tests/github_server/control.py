"""`/_test/*`: steer a server in another process (see spawn.py). No auth, no faults: loopback only."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from tests.zulip_server.faults import Fault

if TYPE_CHECKING:
    from .server import GitHubTestServer

PREFIX = "/_test/"
Handler = Callable[["GitHubTestServer", dict[str, Any]], Any]


def _state(gh: GitHubTestServer, _: dict[str, Any]) -> Any:
    return {"url": gh.url, "org": gh.org.login, "app_id": gh.app.id, "installation_id": gh.installation.id,
            "private_key_pem": gh.private_key_pem.decode(), "repos": sorted(r.full_name for r in gh.hub.repos.values()),
            "requests": len(gh.request_log), "installation_used": gh.rate_used()}


def _add_student(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    user = gh.add_student(body["login"])
    return {"login": user.login, "id": user.id, "token": user.token}


def _add_template(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    files = {path: base64.b64decode(data) for path, data in body["files"].items()}
    return {"full_name": gh.add_template(body["name"], files).full_name}


def _faults(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    kind = body["kind"]
    if kind == "clear":
        gh.faults.clear()
    elif kind == "script":
        items = [Fault(**item) if isinstance(item, dict) else item for item in body["items"]]
        gh.faults.script(items, body.get("endpoint"))
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return {}


def _rate_limit(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    gh.set_rate_limit(int(body["limit"]), float(body.get("window_seconds", 3600.0)))
    return {}


def _seed_repos(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    """`count` repositories `<prefix>-<n>` in the organization holding `files`, each with its own student
    `<prefix>-s<n>` as a collaborator (but those numbered in `uninvited`): a benchmark's runs, made directly."""
    files = {path: base64.b64decode(data) for path, data in body["files"].items()}
    prefix, uninvited = str(body["prefix"]), set(body.get("uninvited", []))
    with gh.hub.lock:
        for n in range(int(body["count"])):
            student = gh.add_student(f"{prefix}-s{n}")
            repo = gh.hub.add_repo(gh.org, f"{prefix}-{n}", files)
            if n not in uninvited:
                repo.collaborators.add(student.login)
    return {"repos": len(gh.hub.repos)}


def _branch(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    """A new branch `name` at the default branch's tip of `repo`, as a student's push would make it (no webhook)."""
    with gh.hub.lock:
        repo = gh.repo(str(body["repo"]))
        repo.branches[str(body["name"])] = repo.branches[repo.default_branch]
        repo.pushed_at = time.time()
    return {}


def _requests(gh: GitHubTestServer, body: dict[str, Any]) -> Any:
    """The request log from index `since` on: [method, path, status, conditional, at] each."""
    log = gh.request_log[int(body.get("since", 0)):]
    return [[r.method, r.path, r.status, r.conditional, r.at] for r in log]


HANDLERS: dict[str, Handler] = {"state": _state, "students": _add_student, "templates": _add_template,
                                "faults": _faults, "rate_limit": _rate_limit, "seed_repos": _seed_repos,
                                "branch": _branch, "requests": _requests}


def handle(gh: GitHubTestServer, request: Request) -> Response:
    handler = HANDLERS.get(request.path.removeprefix(PREFIX))
    if handler is None:
        return Response(json.dumps({"error": "unknown control endpoint"}), 404, content_type="application/json")
    body = json.loads(request.get_data() or b"{}") if request.method != "GET" else request.args.to_dict()
    try:
        result = handler(gh, body)
    except (KeyError, ValueError, TypeError) as error:
        return Response(json.dumps({"error": str(error)}), 400, content_type="application/json")
    return Response(json.dumps(result), content_type="application/json")
