"""Keys and signatures of the git hook and the per-repository HTTPS credentials.

Each repository gets its own key, derived from the root secret, so a leaked hook key
can forge events for that one repository only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

REPO_HEADER = "X-Lessonbot-Repo"
SIGNATURE_HEADER = "X-Lessonbot-Signature"
TIMESTAMP_HEADER = "X-Lessonbot-Timestamp"
MAX_SKEW_SECONDS = 300


def derive(secret: str, purpose: str, repo_name: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{repo_name}".encode(), hashlib.sha256).hexdigest()


def repo_hook_key(secret: str, repo_name: str) -> str:
    return derive(secret, "hook", repo_name)


def repo_password(secret: str, repo_name: str) -> str:
    return derive(secret, "password", repo_name)[:24]


def sign(key: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class BadSignature(Exception):
    """The hook signature cannot be accepted; the message says why, in a sentence."""


def verify(key: str, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> int:
    """The signed timestamp, when the signature matches and is recent; BadSignature otherwise.

    The hook sends whole seconds, so only decimal digits are a timestamp: `nan` (never
    older than anything), `inf`, exponents and signs are refused. The comparison is on
    bytes: a header with non-ASCII characters is a wrong signature, not a TypeError.
    A valid signature can still be a replay: the caller remembers it (service.remember_signature).
    """
    if not timestamp or not signature:
        raise BadSignature("The hook signature or timestamp header is missing.")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise BadSignature("The hook timestamp must be whole seconds since 1970 (decimal digits).")
    if abs((now if now is not None else time.time()) - int(timestamp)) > MAX_SKEW_SECONDS:
        raise BadSignature(f"The hook timestamp is more than {MAX_SKEW_SECONDS} seconds away from the server's clock.")
    expected = sign(key, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape")):
        raise BadSignature("The hook signature does not match the body.")
    return int(timestamp)
