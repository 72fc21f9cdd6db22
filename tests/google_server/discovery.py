"""The discovery documents that ship with google-api-python-client, used as the contract.

The server routes every API request through :class:`DiscoveryIndex` (path, HTTP
method and query parameters must match a discovery method) and checks request
and response bodies with :class:`SchemaChecker`. Tests use the same checker on
what the client library hands back.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

from .errors import ApiError, invalid_argument, not_found

DOCUMENTS_DIR = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
APIS = {"classroom": "classroom.v1", "drive": "drive.v3", "sheets": "sheets.v4"}
# With client_options.api_endpoint the client drops the discovery servicePath, so
# Drive paths arrive as "/files"; a caller that keeps the real path sends "/drive/v3/files".
PATH_PREFIXES = {"classroom": ("",), "drive": ("", "drive/v3/"), "sheets": ("",)}
INT32_RANGE = (-(2**31), 2**31 - 1)


@cache
def load_document(api: str) -> dict[str, Any]:
    """The parsed discovery document for ``api`` ("classroom", "drive" or "sheets")."""
    document: dict[str, Any] = json.loads((DOCUMENTS_DIR / f"{APIS[api]}.json").read_text())
    return document


def iter_methods(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Every method description under a discovery resource, depth first."""
    methods = list(resource.get("methods", {}).values())
    for sub in resource.get("resources", {}).values():
        methods.extend(iter_methods(sub))
    return methods


@dataclass(frozen=True)
class Route:
    """One discovery method reachable at one URL pattern."""

    api: str
    method: dict[str, Any]
    pattern: re.Pattern[str]
    literal_length: int
    is_upload: bool

    @property
    def method_id(self) -> str:
        return str(self.method["id"])

    @property
    def http_method(self) -> str:
        return str(self.method["httpMethod"])


@dataclass
class MatchedCall:
    """A request resolved to a discovery method, with typed parameters."""

    route: Route
    path_params: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.route.api

    @property
    def method_id(self) -> str:
        return self.route.method_id


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    parts: list[str] = []
    literal = 0
    for piece in re.split(r"(\{\+?[A-Za-z0-9_]+\})", template):
        if piece.startswith("{"):
            name = piece.strip("{}+")
            parts.append(f"(?P<{name}>[^/]+?)")
        else:
            parts.append(re.escape(piece))
            literal += len(piece)
    return re.compile("^/" + "".join(parts) + "$"), literal


def _routes_for(api: str) -> list[Route]:
    document = load_document(api)
    routes = []
    for method in iter_methods(document):
        for prefix in PATH_PREFIXES[api]:
            pattern, literal = _template_regex(prefix + method["path"])
            routes.append(Route(api, method, pattern, literal, is_upload=False))
        for protocol in method.get("mediaUpload", {}).get("protocols", {}).values():
            pattern, literal = _template_regex(protocol["path"].lstrip("/"))
            routes.append(Route(api, method, pattern, literal, is_upload=True))
    return routes


class DiscoveryIndex:
    """Resolves raw request paths to discovery methods and validates parameters."""

    def __init__(self, apis: tuple[str, ...] = tuple(APIS)) -> None:
        self.routes = sorted(
            (route for api in apis for route in _routes_for(api)),
            key=lambda route: -route.literal_length,
        )
        self.checkers = {api: SchemaChecker(load_document(api)) for api in apis}

    def method(self, method_id: str) -> dict[str, Any]:
        """The discovery description of ``method_id`` (e.g. "drive.files.list")."""
        for route in self.routes:
            if route.method_id == method_id:
                return route.method
        raise KeyError(method_id)

    def match(self, http_method: str, raw_path: str) -> Route | None:
        """The route for a raw (still percent-encoded) path, or None."""
        for route in self.routes:
            if route.http_method == http_method and route.pattern.match(raw_path):
                return route
        return None

    def resolve(self, http_method: str, raw_path: str, raw_query: str) -> MatchedCall:
        """Match the request and type-check its query parameters against discovery."""
        route = self.match(http_method, raw_path)
        if route is None:
            raise not_found("classroom", f"The requested URL {raw_path} was not found on this server.")
        found = route.pattern.match(raw_path)
        assert found is not None
        path_params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        query = parse_query(route, raw_query, load_document(route.api)["parameters"])
        return MatchedCall(route, path_params, query)


def _bad_param(route: Route, message: str) -> ApiError:
    return invalid_argument(route.api, message)


def _convert(route: Route, name: str, spec: dict[str, Any], raw: str) -> Any:
    kind = spec.get("type", "string")
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _bad_param(route, f"Invalid value '{raw}' for boolean parameter {name}.")
        return raw == "true"
    if kind == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise _bad_param(route, f"Invalid value '{raw}' for integer parameter {name}.") from None
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and value < int(low)) or (high is not None and value > int(high)):
            raise _bad_param(route, f"Value {value} for {name} is out of range [{low}, {high}].")
        return value
    if "enum" in spec and raw not in spec["enum"]:
        raise _bad_param(route, f"Invalid value at '{name}', \"{raw}\" is not one of {spec['enum']}.")
    return raw


def parse_query(route: Route, raw_query: str, global_params: dict[str, Any]) -> dict[str, Any]:
    """Typed query parameters; unknown, repeated-when-single or missing required → 400."""
    specs = {name: spec for name, spec in route.method.get("parameters", {}).items() if spec.get("location") == "query"}
    specs.update(global_params)
    values: dict[str, Any] = {}
    for name, items in urllib.parse.parse_qs(raw_query, keep_blank_values=True).items():
        spec = specs.get(name)
        if spec is None:
            raise _bad_param(
                route,
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter.',
            )
        if len(items) > 1 and not spec.get("repeated"):
            raise _bad_param(route, f"Parameter {name} may be given only once.")
        converted = [_convert(route, name, spec, item) for item in items]
        values[name] = converted if spec.get("repeated") else converted[0]
    for name, spec in specs.items():
        if spec.get("required") and name not in values:
            raise _bad_param(route, f"Required parameter: {name}")
    return values


# --- schema checking -------------------------------------------------------------------


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/") + "==", validate=False)
    except (binascii.Error, ValueError):
        return False
    return True


STRING_FORMATS = {
    "int64": lambda s: re.fullmatch(r"-?\d+", s) is not None,
    "uint64": lambda s: re.fullmatch(r"\d+", s) is not None,
    "date-time": _is_datetime,
    "google-datetime": _is_datetime,
    "date": lambda s: re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None,
    "byte": _is_base64,
}


class SchemaChecker:
    """Checks JSON values against the ``schemas`` of one discovery document.

    It reports wrong types, values outside an enum, malformed formats (int64 as a
    string, RFC 3339 times), fields the schema does not know, and fields that the
    schema marks required (``required: true`` or Drive's per-method
    ``annotations.required``).
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = document["schemas"]

    def check(self, value: Any, schema: str | dict[str, Any], method_id: str | None = None) -> list[str]:
        """Problems found in ``value``; an empty list means it conforms."""
        problems: list[str] = []
        spec = {"$ref": schema} if isinstance(schema, str) else schema
        self._check(value, spec, "$", method_id, problems)
        return problems

    def selector_problems(self, tree: FieldTree | None, schema: str) -> list[str]:
        """Names in a parsed ``fields`` selector that the response schema lacks."""
        problems: list[str] = []
        self._selector(tree, {"$ref": schema}, "", problems)
        return problems

    def _selector(self, tree: FieldTree | None, spec: dict[str, Any], prefix: str, out: list[str]) -> None:
        spec = self._resolve(spec)
        while spec.get("type") == "array":
            spec = self._resolve(spec.get("items", {}))
        properties, extra = spec.get("properties"), spec.get("additionalProperties")
        if tree is None or (properties is None and extra is None):
            return
        for name, subtree in tree.items():
            if properties and name in properties:
                self._selector(subtree, properties[name], f"{prefix}{name}/", out)
            elif isinstance(extra, dict):
                self._selector(subtree, extra, f"{prefix}{name}/", out)
            else:
                out.append(f"{prefix}{name}")

    def _resolve(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.schemas[spec["$ref"]] if "$ref" in spec else spec

    def _check(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        spec = self._resolve(spec)
        kind = spec.get("type", "any")
        checker = getattr(self, f"_check_{kind}", None)
        if checker is not None:
            checker(value, spec, path, method_id, out)

    def _check_object(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if not isinstance(value, dict):
            out.append(f"{path}: expected object, got {type(value).__name__}")
            return
        properties = spec.get("properties", {})
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                self._check(item, properties[key], f"{path}.{key}", method_id, out)
            elif isinstance(extra, dict):
                self._check(item, extra, f"{path}[{key!r}]", method_id, out)
            else:
                out.append(f"{path}: unknown field {key!r}")
        for key, prop in properties.items():
            required = prop.get("required") is True or (
                method_id is not None and method_id in prop.get("annotations", {}).get("required", [])
            )
            if required and key not in value:
                out.append(f"{path}: missing required field {key!r}")

    def _check_array(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if not isinstance(value, list):
            out.append(f"{path}: expected array, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            self._check(item, spec.get("items", {}), f"{path}[{index}]", method_id, out)

    def _check_string(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if not isinstance(value, str):
            out.append(f"{path}: expected string, got {type(value).__name__}")
            return
        if "enum" in spec and value not in spec["enum"]:
            out.append(f"{path}: {value!r} is not one of {spec['enum']}")
        valid = STRING_FORMATS.get(spec.get("format", ""), lambda s: True)
        if not valid(value):
            out.append(f"{path}: {value!r} is not a valid {spec['format']}")

    def _check_integer(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(f"{path}: expected integer, got {type(value).__name__}")
            return
        if spec.get("format") == "int32" and not INT32_RANGE[0] <= value <= INT32_RANGE[1]:
            out.append(f"{path}: {value} does not fit int32")

    def _check_number(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: expected number, got {type(value).__name__}")

    def _check_boolean(self, value: Any, spec: dict[str, Any], path: str, method_id: str | None, out: list[str]) -> None:
        if not isinstance(value, bool):
            out.append(f"{path}: expected boolean, got {type(value).__name__}")


# --- partial responses (the `fields` parameter) -----------------------------------------

FieldTree = dict[str, "FieldTree | None"]


def parse_fields(text: str) -> FieldTree | None:
    """Parse a ``fields`` selector ("files(id,name),nextPageToken", "a/b"); None = all."""
    tree, rest = _parse_field_list(text.replace(" ", ""), 0)
    if rest != len(text.replace(" ", "")):
        raise ValueError(f"Invalid field selection {text}")
    return tree


def _parse_field_list(text: str, pos: int) -> tuple[FieldTree | None, int]:
    tree: FieldTree = {}
    everything = False
    while pos < len(text) and text[pos] != ")":
        match = re.match(r"[A-Za-z0-9_*/.$-]+", text[pos:])
        if match is None:
            raise ValueError(f"Invalid field selection {text}")
        path, pos = match.group(0).split("/"), pos + match.end()
        subtree: FieldTree | None = None
        if pos < len(text) and text[pos] == "(":
            subtree, pos = _parse_field_list(text, pos + 1)
            pos += 1
        everything |= path == ["*"]
        _insert_path(tree, path, subtree)
        if pos < len(text) and text[pos] == ",":
            pos += 1
    return (None if everything else tree), pos


def _insert_path(tree: FieldTree, path: list[str], leaf: FieldTree | None) -> None:
    head, *rest = path
    if not rest:
        tree[head] = leaf
        return
    node = tree.get(head, {})
    if node is None:
        return
    tree[head] = node
    _insert_path(node, rest, leaf)


def apply_fields(value: Any, tree: FieldTree | None) -> Any:
    """Keep only the selected fields of a JSON value."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [apply_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    return {key: apply_fields(value[key], sub) for key, sub in tree.items() if key in value}
