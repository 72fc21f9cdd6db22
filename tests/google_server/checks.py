"""Assertions that check what the client library returns against discovery schemas."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from googleapiclient.errors import HttpError

from .discovery import DiscoveryIndex, SchemaChecker, load_document


@cache
def _index() -> DiscoveryIndex:
    return DiscoveryIndex()


def response_problems(method_id: str, body: Any) -> list[str]:
    """Problems of ``body`` against the response schema of ``method_id``."""
    api = method_id.split(".")[0]
    method = _index().method(method_id)
    if "response" not in method:
        return [] if body in ("", b"", None, {}) else [f"{method_id} has no response body, got {body!r}"]
    return SchemaChecker(load_document(api)).check(body, method["response"]["$ref"])


def assert_response(method_id: str, body: Any) -> Any:
    """Fail unless ``body`` conforms to the response schema of ``method_id``; returns it."""
    problems = response_problems(method_id, body)
    assert not problems, f"{method_id} response does not match discovery: {problems}"
    return body


def assert_schema(api: str, schema: str, value: Any) -> None:
    """Fail unless ``value`` conforms to discovery schema ``schema`` of ``api``."""
    problems = SchemaChecker(load_document(api)).check(value, schema)
    assert not problems, f"{api} {schema} does not match discovery: {problems}"


def error_body(error: HttpError) -> dict[str, Any]:
    """The parsed JSON body of an HttpError."""
    content = error.content.decode() if isinstance(error.content, bytes) else error.content
    return dict(json.loads(content))
