"""`/_test/*`: steer a server in another process (see spawn.py). No auth, no faults: loopback only."""

from __future__ import annotations

import base64
import json
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


HANDLERS: dict[str, Handler] = {"state": _state, "students": _add_student, "templates": _add_template,
                                "faults": _faults, "rate_limit": _rate_limit}


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
