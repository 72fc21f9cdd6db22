"""Checks the server's requests and answers against Zulip's OpenAPI description.

Uses openapi-core. Zulip describes every parameter as `in: query`, even for
POST/DELETE, because its server reads them from the query string or the form
body alike; so form fields are checked as query parameters, as Zulip's own test
suite does (zerver/openapi/openapi.py).

The reference file describes Zulip 3.x. Fields that the current API added are
listed in `CURRENT_API_EXTENSIONS` and removed before a success is checked, so
that everything else is still held to `additionalProperties: false`. Answers
whose status the file does not document (401, 429) are checked against Zulip's
documented error format (https://zulip.com/api/rest-error-handling).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import ParametersError
from openapi_schema_validator import OAS30Validator

from .api import Exchange

# Vendored (see reference/README.md): the suite reads nothing from outside the repository.
SPEC_PATH = Path(__file__).resolve().parent / "reference" / "zulip-openapi.yaml"

# (method, path template) -> top-level response fields the 3.x description lacks.
CURRENT_API_EXTENSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("get", "/server_settings"): frozenset({"realm_url", "zulip_merge_base", "realm_web_public_access_enabled"}),
    ("post", "/register"): frozenset({"event_queue_longpoll_timeout_seconds", "zulip_merge_base"}),
    ("get", "/messages/{message_id}"): frozenset({"message"}),  # feature level 120
}

# Request parameters that the 3.x file describes too narrowly: `to` may be a list
# of emails or a stream name (as its own text says), and `type` may be `direct`
# or `channel` (the current names, Zulip 7.0+, feature levels 174 and 248).
KNOWN_REQUEST_DEVIATIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("post", "/messages", "to"),
        ("post", "/messages", "type"),
        # The [operator, operand] pair form, which /api/construct-narrow still documents.
        ("get", "/messages", "narrow"),
    }
)

# Operations whose response schema in the file is unusable as written: its
# `oneOf` branches differ only in their examples, so every answer matches both.
SCHEMA_OVERRIDES: dict[tuple[str, str], str] = {
    ("post", "/users/me/subscriptions"): "AddSubscriptionsResponse",
}

HEARTBEAT_EVENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "id"],
    "properties": {"type": {"const": "heartbeat"}, "id": {"type": "integer"}},
}

CODED_ERROR = {
    "type": "object",
    "required": ["result", "msg", "code"],
    "properties": {
        "result": {"const": "error"},
        "msg": {"type": "string"},
        "code": {"type": "string"},
    },
}
RATE_LIMIT_ERROR = {
    "allOf": [CODED_ERROR],
    "required": ["retry-after"],
    "properties": {"code": {"const": "RATE_LIMIT_HIT"}, "retry-after": {"type": "number", "minimum": 0}},
}
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@dataclass(frozen=True)
class Violation:
    """One way an exchange broke the contract."""

    method: str
    path: str
    status: int
    where: str  # "request" or "response"
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.where}: {self.problem}"


class ContractChecker:
    """An observer for `ZulipTestServer.add_observer` that collects violations."""

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        self.spec_path = spec_path
        self.violations: list[Violation] = []
        self.checked = 0
        self._lock = threading.Lock()

    @cached_property
    def openapi(self) -> OpenAPI:
        """The parsed description (the file itself is not validated: it has a duplicate enum)."""
        return OpenAPI.from_file_path(str(self.spec_path), config=Config(spec_validator_cls=None))

    def __call__(self, exchange: Exchange) -> None:
        if exchange.fault is not None:
            return  # injected faults are deliberately off-contract
        problems = self.check(exchange)
        with self._lock:
            self.checked += 1
            self.violations.extend(problems)

    def check(self, exchange: Exchange) -> list[Violation]:
        """Every violation in one exchange (an empty list if it keeps the contract)."""
        request = self._request(exchange)
        found = self._request_problems(request, exchange)
        found += self._response_problems(request, exchange)
        return found

    @staticmethod
    def _request(exchange: Exchange) -> MockRequest:
        args = {**exchange.query.to_dict(), **exchange.form.to_dict()}
        headers = {key: value for key, value in exchange.headers.items()}
        return MockRequest(
            "http://127.0.0.1", exchange.method, exchange.path, args=args, headers=headers, data=b"", content_type=""
        )

    def _request_problems(self, request: MockRequest, exchange: Exchange) -> list[Violation]:
        try:
            template, _ = self._operation(request)
        except PathNotFound:
            return []  # endpoints newer than the description (e.g. /bot_storage)
        errors = list(self.openapi.iter_request_errors(request))
        for error in list(errors):
            if isinstance(error, ParametersError):
                errors.remove(error)
                errors.extend(error.errors)
        return [
            self._violation(exchange, "request", error)
            for error in errors
            if (exchange.method.lower(), template, getattr(error, "name", None)) not in KNOWN_REQUEST_DEVIATIONS
        ]

    def _response_problems(self, request: MockRequest, exchange: Exchange) -> list[Violation]:
        body = exchange.json()
        if exchange.status == 429:
            return self._rate_limit_problems(exchange, body)
        try:
            template, statuses = self._operation(request)
        except PathNotFound:
            return []
        if str(exchange.status) not in statuses:
            return self._schema_problems(exchange, body, CODED_ERROR)
        key = (exchange.method.lower(), template)
        if key in SCHEMA_OVERRIDES and exchange.status == 200:
            return self._schema_problems(exchange, body, self._component(SCHEMA_OVERRIDES[key]))
        found, trimmed = self._trim(exchange, key, body)
        response = MockResponse(json.dumps(trimmed).encode(), exchange.status)
        try:
            self.openapi.validate_response(request, response)
        except OpenAPIError as error:
            if exchange.status < 400 or self._error_problems(exchange, template, body):
                found.append(self._violation(exchange, "response", error))
        return found

    def _error_problems(self, exchange: Exchange, template: str, body: dict[str, Any]) -> list[Violation]:
        """Second look at an error the file's schema refused.

        Some error schemas are `oneOf` alternatives that overlap (a plain
        CodedError matches both), and REQUEST_VARIABLE_MISSING (with
        `var_name`) can come from any endpoint, as /rest-error-handling says.
        """
        operation = self._spec_dict["paths"][template][exchange.method.lower()]
        documented = operation["responses"][str(exchange.status)]
        schema = documented["content"]["application/json"]["schema"]
        candidates = [_one_of_as_any_of(schema)]
        if body.get("code") == "REQUEST_VARIABLE_MISSING":
            candidates.append({"$ref": "#/components/schemas/MissingArgumentError"})
        problems: list[Violation] = []
        for candidate in candidates:
            resolved = {**candidate, "components": self._spec_dict["components"]}
            problems = self._schema_problems(exchange, body, resolved)
            if not problems:
                return []
        return problems

    def _trim(self, exchange: Exchange, key: tuple[str, str], body: dict[str, Any]) -> tuple[list[Violation], dict[str, Any]]:
        """Drop current-API fields and heartbeat events (checked here) from a success."""
        extensions = CURRENT_API_EXTENSIONS.get(key, frozenset())
        trimmed = {name: value for name, value in body.items() if name not in extensions}
        found: list[Violation] = []
        if key == ("get", "/events") and isinstance(body.get("events"), list):
            heartbeats = [e for e in body["events"] if e.get("type") == "heartbeat"]
            for event in heartbeats:
                found += self._schema_problems(exchange, event, HEARTBEAT_EVENT)
            trimmed["events"] = [e for e in body["events"] if e not in heartbeats]
        return found, trimmed

    def _component(self, name: str) -> dict[str, Any]:
        """A schema of the file's components, with the components to resolve its $refs."""
        components = self._spec_dict["components"]
        return {"$ref": f"#/components/schemas/{name}", "components": components}

    @cached_property
    def _spec_dict(self) -> dict[str, Any]:
        with self.spec_path.open() as spec_file:
            spec: dict[str, Any] = yaml.safe_load(spec_file)
        return spec

    def _operation(self, request: MockRequest) -> tuple[str, set[str]]:
        """The path template and the documented statuses of the request's operation."""
        found = self._finder.find(request.method, request.host_url + request.path)
        return found.path_result.pattern, set((found.operation / "responses").keys())

    @cached_property
    def _finder(self) -> APICallPathFinder:
        return APICallPathFinder(self.openapi.spec)

    def _rate_limit_problems(self, exchange: Exchange, body: Any) -> list[Violation]:
        found = self._schema_problems(exchange, body, RATE_LIMIT_ERROR)
        for header in (*RATE_LIMIT_HEADERS, "Retry-After"):
            if header not in exchange.response_headers:
                found.append(Violation(exchange.method, exchange.path, exchange.status, "response", f"missing header {header}"))
        return found

    @staticmethod
    def _schema_problems(exchange: Exchange, body: Any, schema: dict[str, Any]) -> list[Violation]:
        errors = OAS30Validator(schema).iter_errors(body)
        return [Violation(exchange.method, exchange.path, exchange.status, "response", e.message) for e in errors]

    def excuse(self, method: str, path: str, where: str = "request") -> list[Violation]:
        """Take back the violations of a request a test made wrong on purpose."""
        with self._lock:
            taken = [v for v in self.violations if (v.method, v.path, v.where) == (method, path, where)]
            self.violations = [v for v in self.violations if v not in taken]
        return taken

    @staticmethod
    def _violation(exchange: Exchange, where: str, error: Exception) -> Violation:
        details = [str(error)]
        cause = error.__cause__
        for schema_error in getattr(cause, "schema_errors", ()):
            details.append(f"{list(schema_error.path)}: {schema_error.message}")
        return Violation(exchange.method, exchange.path, exchange.status, where, " | ".join(details))


def _one_of_as_any_of(schema: Any) -> Any:
    """The schema with every `oneOf` read as `anyOf`."""
    if isinstance(schema, dict):
        return {("anyOf" if key == "oneOf" else key): _one_of_as_any_of(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_one_of_as_any_of(item) for item in schema]
    return schema
