"""Keys and signatures of the git hook and the per-repository HTTPS credentials.

Each repository gets its own key, derived from the root secret, so a leaked hook key
can forge events for that one repository only.
"""

from __future__ import annotations

import hashlib
import hmac
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


def verify(key: str, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> bool:
    """True when the signature matches and the timestamp is recent (no replays of old pushes)."""
    if not timestamp or not signature:
        return False
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    if age > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), signature)
