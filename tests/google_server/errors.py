"""Google-shaped error responses.

Classroom and Sheets answer in the ``google.rpc.Status`` JSON shape
(``code``/``message``/``status``); Drive v3 uses the older shape with an
``errors`` list carrying ``domain`` and ``reason``. The Python client's retry
logic reads ``errors[0].reason`` for 403s, so quota errors carry both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

LEGACY_REASONS = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
    500: "internalError",
    502: "backendError",
    503: "backendError",
}

UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
PROJECT_PERMISSION_DENIED_MESSAGE = (
    "@ProjectPermissionDenied The Developer Console project is not permitted to make this request."
)


@dataclass
class ApiError(Exception):
    """An error answered to the client as a Google JSON error body."""

    code: int
    message: str
    status: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.message}"

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            error["errors"] = self.errors
        if self.status:
            error["status"] = self.status
        if self.details:
            error["details"] = self.details
        return {"error": error}


def rpc_error(code: int, message: str, **extra: Any) -> ApiError:
    """An error in the ``google.rpc.Status`` shape used by Classroom and Sheets."""
    return ApiError(code, message, status=STATUS_NAMES.get(code, "UNKNOWN"), **extra)


def legacy_error(code: int, message: str, reason: str | None = None, **where: str) -> ApiError:
    """An error in Drive's shape: an ``errors`` list with domain and reason."""
    item: dict[str, Any] = {
        "message": message,
        "domain": "usageLimits" if reason and "RateLimit" in reason else "global",
        "reason": reason or LEGACY_REASONS.get(code, "backendError"),
    }
    if where:
        item.update(where)
    return ApiError(code, message, errors=[item])


def api_error(api: str, code: int, message: str, reason: str | None = None) -> ApiError:
    """An error in the usual shape of ``api`` ("drive" → legacy, others → rpc)."""
    if api == "drive":
        return legacy_error(code, message, reason)
    return rpc_error(code, message)


def not_found(api: str, message: str = "Requested entity was not found.") -> ApiError:
    """404 for a missing resource."""
    return api_error(api, 404, message)


def invalid_argument(api: str, message: str) -> ApiError:
    """400 for a malformed request."""
    if api == "drive":
        return legacy_error(400, message, "invalid")
    return rpc_error(400, message)


def unauthenticated(api: str) -> ApiError:
    """401 for a missing, unknown or expired access token."""
    error = api_error(api, 401, UNAUTHENTICATED_MESSAGE)
    if api == "drive":
        error.errors[0].update({"reason": "authError", "location": "Authorization", "locationType": "header"})
        error.status = "UNAUTHENTICATED"
    return error


def insufficient_scopes(api: str) -> ApiError:
    """403 when the token lacks every scope the method accepts."""
    error = rpc_error(403, "Request had insufficient authentication scopes.")
    error.details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {"service": f"{api}.googleapis.com"},
        }
    ]
    if api == "drive":
        error.errors = [
            {
                "message": "Insufficient Permission",
                "domain": "global",
                "reason": "insufficientPermissions",
            }
        ]
    return error


def project_permission_denied() -> ApiError:
    """Classroom's answer when a project grades courseWork it did not create."""
    return rpc_error(403, PROJECT_PERMISSION_DENIED_MESSAGE)


def quota_exhausted(api: str, metric: str, limit: str, retry_after: float | None) -> ApiError:
    """429 RESOURCE_EXHAUSTED, as Sheets and Classroom send when a quota runs out."""
    service = f"{api}.googleapis.com"
    message = (
        f"Quota exceeded for quota metric '{metric}' and limit '{limit}' of service '{service}' for consumer 'project_number:0'."
    )
    error = rpc_error(429, message)
    error.details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {"service": service, "quota_metric": metric, "quota_limit": limit},
        }
    ]
    if retry_after is not None:
        error.headers["Retry-After"] = str(max(0, round(retry_after)))
    return error


def rate_limited_403(reason: str) -> ApiError:
    """403 ``rateLimitExceeded`` / ``userRateLimitExceeded`` (Drive-style quota errors)."""
    message = "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" else "Rate Limit Exceeded"
    error = legacy_error(403, message, reason)
    error.errors[0]["domain"] = "usageLimits"
    return error


def server_error(code: int) -> ApiError:
    """A 5xx answer."""
    messages = {
        500: "Internal error encountered.",
        502: "Bad Gateway",
        503: "The service is currently unavailable.",
        504: "The request timed out.",
    }
    error = rpc_error(code, messages.get(code, "Backend Error"))
    error.errors = [{"message": error.message, "domain": "global", "reason": "backendError"}]
    return error
