"""Request helpers shared by the blueprints: JSON bodies, internal-only endpoints, JSON errors."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from functools import lru_cache
from typing import TypeVar

from flask import Flask, Request, Response, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import HTTPException

from app import current

log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An error answer: HTTP status, a machine-readable code and a sentence for people."""

    def __init__(self, status: int, code: str, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def json_body(model: type[Model]) -> Model:
    """Parse and validate the JSON body, or answer 400 saying what is wrong."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        details = [_describe(item) for item in error.errors()]
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise ApiError(400, "invalid_json", "The body is not valid JSON.", details) from None
        raise ApiError(400, "invalid_body", "The body is missing fields or has wrong values.", details) from None


def _describe(item: ErrorDetails) -> str:
    where = ".".join(str(part) for part in item["loc"]) or "body"
    return f"{where}: {item['msg']}"


def is_loopback(address: str | None) -> bool:
    return address is not None and _is_loopback(address)


@lru_cache(maxsize=64)
def _is_loopback(address: str) -> bool:
    """Parsed once per address (every internal request asks; parsing was a fiftieth of a message's CPU)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def require_internal() -> None:
    """Only loopback callers holding the internal token."""
    if not is_loopback(request.remote_addr):
        raise ApiError(403, "forbidden", "Internal endpoints answer loopback callers only.")
    expected = current.settings().internal_token.get_secret_value()
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "Missing or wrong internal token (Authorization: Bearer …).")


def _error_response(status: int, code: str, message: str, details: list[str] | None = None) -> tuple[Response, int]:
    body: dict[str, object] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return jsonify(body), status


# Machine endpoints never use the session cookie; opening it (a signing serializer built and the
# cookie verified on every request) was a tenth of a chat message's CPU in the core.
SESSIONLESS_PREFIXES = ("/internal/", "/git/", "/github/hook", "/health", "/metrics")


class _SessionlessMachineEndpoints(SecureCookieSessionInterface):
    """Flask's cookie session, except for the machine endpoints, which get the read-only null session."""

    def open_session(self, app: Flask, incoming: Request) -> SecureCookieSession | None:
        if incoming.path.startswith(SESSIONLESS_PREFIXES):
            return None  # Flask then uses make_null_session: reading works, writing raises, nothing is sent
        return super().open_session(app, incoming)


def init_app(app: Flask) -> None:
    app.session_interface = _SessionlessMachineEndpoints()

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> tuple[Response, int]:
        return _error_response(error.status, error.code, error.message, error.details)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        code = (error.name or "error").lower().replace(" ", "_")
        message = error.description or error.name
        if error.code == 413:
            message = f"The body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes."
        return _error_response(error.code or 500, code, message)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
