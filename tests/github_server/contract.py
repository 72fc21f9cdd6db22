"""Checks every exchange of the GitHub test server against GitHub's own OpenAPI description.

The description is the vendored subset of `@octokit/openapi` (reference/README.md). Requests
(path, query, JSON body) and answers (status, body) are validated with openapi-core. Answers
GitHub gives on any endpoint without each operation listing them (401, 403 rate limits, 304)
are held to GitHub's documented general shapes: `basic-error` for errors, no body and an ETag
for a 304. A request to a path the description does not have is a violation too: the server
must speak only GitHub's API.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest, MockResponse

from .api import Exchange

SPEC_PATH = Path(__file__).resolve().parent / "reference" / "github-openapi.json"
HOST = "https://api.github.com"
# Path parameters that hold slashes (`contents/{path}`, `git/ref/{ref}`): GitHub takes them
# unescaped, an OpenAPI path template matches one segment, so they are escaped for matching.
GREEDY_MARKERS = ("/contents/", "/git/ref/", "/git/matching-refs/")


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    status: int
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.where}: {self.problem}"


class ContractChecker:
    """An observer for `GitHubTestServer.add_observer` that collects violations."""

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        self.spec_path = spec_path
        self.violations: list[Violation] = []
        self.checked = 0
        self._lock = threading.Lock()

    @cached_property
    def spec(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.spec_path.read_text())
        _null_in_nullable_enums(loaded)
        return loaded

    @cached_property
    def openapi(self) -> OpenAPI:
        return OpenAPI.from_dict(self.spec, config=Config())

    @cached_property
    def _finder(self) -> APICallPathFinder:
        return APICallPathFinder(self.openapi.spec)

    def __call__(self, exchange: Exchange) -> None:
        problems = self._fault_problems(exchange) if exchange.fault is not None else self.check(exchange)
        with self._lock:
            self.checked += 1
            self.violations.extend(problems)

    def check(self, exchange: Exchange) -> list[Violation]:
        request = self._request(exchange)
        try:
            found = self._finder.find(request.method, HOST + request.path)
        except PathNotFound:
            return [self._violation(exchange, "request", "no such operation in GitHub's description")]
        problems = [self._violation(exchange, "request", error) for error in self.openapi.iter_request_errors(request)]
        documented = set((found.operation / "responses").keys())
        if exchange.status == 304:
            return problems + self._not_modified_problems(exchange)
        if str(exchange.status) not in documented:
            if exchange.status < 400:
                problems.append(self._violation(exchange, "response", f"status {exchange.status} is not documented"))
            return problems + self._schema_problems(exchange, "basic-error")
        response = MockResponse(exchange.body, exchange.status, content_type="application/json")
        try:
            self.openapi.validate_response(request, response)
        except OpenAPIError as error:
            problems.append(self._violation(exchange, "response", _describe(error)))
        return problems

    @staticmethod
    def _request(exchange: Exchange) -> MockRequest:
        path = exchange.path
        for marker in GREEDY_MARKERS:
            head, found, tail = path.partition(marker)
            if found:
                path = head + marker + tail.replace("/", "%2F")
        content_type = "application/json" if exchange.request_body else ""
        headers = dict(exchange.headers.items())
        return MockRequest(HOST, exchange.method.lower(), path, args=exchange.query, headers=headers,
                           data=exchange.request_body, content_type=content_type)

    def _not_modified_problems(self, exchange: Exchange) -> list[Violation]:
        problems = []
        if exchange.body:
            problems.append(self._violation(exchange, "response", "a 304 has a body"))
        if "ETag" not in exchange.response_headers:
            problems.append(self._violation(exchange, "response", "a 304 without ETag"))
        return problems

    def _fault_problems(self, exchange: Exchange) -> list[Violation]:
        """An injected error still has GitHub's error shape, and a secondary limit its Retry-After."""
        problems = self._schema_problems(exchange, "basic-error")
        if exchange.fault is not None and exchange.fault.kind == "rate_limit" \
                and "Retry-After" not in exchange.response_headers:
            problems.append(self._violation(exchange, "response", "a secondary rate limit without Retry-After"))
        return problems

    def _schema_problems(self, exchange: Exchange, component: str) -> list[Violation]:
        # GitHub's errors always say what went wrong ("Client errors" in its REST docs), though
        # basic-error requires no field.
        schema = {"allOf": [{"$ref": f"#/components/schemas/{component}"}], "required": ["message"],
                  "components": self.spec["components"]}
        try:
            body = exchange.json()
        except ValueError:
            return [self._violation(exchange, "response", "the body is not JSON")]
        return [self._violation(exchange, "response", f"{component}: {error.message}")
                for error in Draft4Validator(schema).iter_errors(body)]

    @staticmethod
    def _violation(exchange: Exchange, where: str, problem: Any) -> Violation:
        return Violation(exchange.method, exchange.path, exchange.status, where, str(problem))


def _null_in_nullable_enums(node: Any) -> None:
    """Add null to the enum of each `nullable: true` schema that lacks it.

    GitHub answers `"state_reason": null` for an open issue, and its description says the
    field is nullable, but lists only strings in its enum; OpenAPI 3.0.3 (as clarified by its
    TSC) and openapi-core need null in the enum for a null to be valid.
    """
    if isinstance(node, dict):
        enum = node.get("enum")
        if node.get("nullable") is True and isinstance(enum, list) and None not in enum:
            enum.append(None)
        for value in node.values():
            _null_in_nullable_enums(value)
    elif isinstance(node, list):
        for item in node:
            _null_in_nullable_enums(item)


def _describe(error: BaseException) -> str:
    """openapi-core's error with the schema errors under it (the top line alone says little)."""
    details = [str(error)]
    cause = error.__cause__
    for inner in getattr(cause, "schema_errors", []) or []:
        details.append(f"{list(inner.path)}: {inner.message}")
    return "; ".join(details)[:2000]


WEBHOOKS_PATH = Path(__file__).resolve().parent / "reference" / "github-webhooks.json"


class WebhookContract:
    """Checks each webhook delivery the server makes against `@octokit/openapi-webhooks` (a vendored subset,
    reference/README.md): the headers GitHub sends with every delivery, and the payload against the schema
    of its event and action (`pull_request` + `opened` is `pull-request-opened`). A delivery of an event the
    subset lacks is a violation too. Use as `gh.webhooks.observers.append(checker)`."""

    def __init__(self, path: Path = WEBHOOKS_PATH) -> None:
        self.path = path
        self.violations: list[str] = []
        self.checked = 0
        self._lock = threading.Lock()

    @cached_property
    def spec(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.path.read_text())
        return loaded

    def __call__(self, event: str, headers: dict[str, str], payload: dict[str, Any]) -> None:
        problems = self.check(event, headers, payload)
        with self._lock:
            self.checked += 1
            self.violations.extend(problems)

    def webhook_name(self, event: str, payload: dict[str, Any]) -> str | None:
        base = event.replace("_", "-")
        action = payload.get("action")
        for name in (f"{base}-{action}", base):
            if name in self.spec["webhooks"]:
                return name
        return None

    def check(self, event: str, headers: dict[str, str], payload: dict[str, Any]) -> list[str]:
        name = self.webhook_name(event, payload)
        what = f"{event}{'.' + str(payload['action']) if 'action' in payload else ''}"
        if name is None:
            return [f"{what}: no such webhook in the vendored description"]
        operation = self.spec["webhooks"][name]["post"]
        sent = {key.lower() for key in headers}
        problems = [f"{what}: header {parameter['name']} missing" for parameter in operation["parameters"]
                    if parameter["in"] == "header" and parameter.get("required") and parameter["name"].lower() not in sent]
        schema = {**operation["requestBody"]["content"]["application/json"]["schema"],
                  "components": self.spec["components"]}
        for error in Draft202012Validator(schema).iter_errors(payload):
            place = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"{what}: {place or 'payload'}: {error.message[:300]}")
        return problems
