"""Reading Zulip request parameters: query string and form body, JSON-encoded values."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.datastructures import MultiDict

from .realm import ApiError


class Params:
    """A request's parameters; the form body wins over the query string, as in Zulip."""

    def __init__(self, query: MultiDict[str, str], form: MultiDict[str, str]) -> None:
        self._values: dict[str, str] = {**query.to_dict(), **form.to_dict()}

    def raw(self, name: str) -> str | None:
        """The value as sent, or None."""
        return self._values.get(name)

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str:
        """A plain string parameter."""
        value = self._values.get(name)
        if value is None:
            if required or default is None:
                raise missing(name)
            return default
        return value

    def optional(self, name: str) -> str | None:
        """A plain string parameter that may be absent."""
        return self._values.get(name)

    def json(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        """A JSON-encoded parameter (lists, dicts, booleans, numbers)."""
        value = self._values.get(name)
        if value is None:
            if required:
                raise missing(name)
            return default
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(f'Argument "{name}" is not valid JSON.') from None

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean sent as JSON `true`/`false`."""
        value = self.json(name, default)
        if not isinstance(value, bool):
            raise ApiError(f"{name} is not a boolean")
        return value

    def integer(self, name: str, default: int | None = None, *, required: bool = False) -> int:
        """An integer parameter."""
        value = self.json(name, default, required=required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(f"{name} is not an integer")
        return value

    def user_list(self, name: str) -> list[str | int]:
        """`to`/`principals`: a JSON list of ids or emails, or comma-separated emails."""
        value = self._values.get(name)
        if value is None:
            raise missing(name)
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        return parsed if isinstance(parsed, list) else [parsed]


def missing(name: str) -> ApiError:
    """Zulip's error for a missing required parameter."""
    return ApiError(f"Missing '{name}' argument", "REQUEST_VARIABLE_MISSING", var_name=name)
