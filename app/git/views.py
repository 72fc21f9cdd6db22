"""POST /git/hook (signed push events) and GET /git/auth (nginx auth_request for HTTPS git)."""

from __future__ import annotations

import base64
import hmac
import re

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field

from app import state
from app.git.repos import repo_path
from app.git.service import UnknownRepository, handle_push
from app.git.signing import REPO_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, repo_hook_key, repo_password, verify
from app.http import ApiError, json_body

bp = Blueprint("git", __name__)


class RefUpdate(BaseModel):
    old: str = Field(max_length=64)
    new: str = Field(max_length=64)
    ref: str = Field(max_length=300)


class PushEvent(BaseModel):
    repo: str = Field(min_length=1, max_length=128)
    refs: list[RefUpdate] = Field(default_factory=list, max_length=1000)


def _verified_repo_name() -> str:
    """The repository named in the signed headers, once the body's signature checks out; 401 otherwise."""
    name = request.headers.get(REPO_HEADER, "")
    body = request.get_data(cache=True)
    secret = state.settings().git_hook_secret.get_secret_value()
    signed = re.fullmatch(r"[a-z0-9-]{1,128}", name) and verify(
        repo_hook_key(secret, name), request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body
    )
    if not signed:
        raise ApiError(401, "bad_signature", "The hook signature is missing, wrong or too old.")
    return name


@bp.post("/git/hook")
def git_hook() -> tuple[Response, int]:
    signed_name = _verified_repo_name()
    event = json_body(PushEvent)
    if event.repo != signed_name:
        raise ApiError(401, "bad_signature", "The signed repository does not match the body.")
    try:
        result = handle_push(event.repo, state.catalog(), state.settings())
    except UnknownRepository as error:
        raise ApiError(404, "unknown_repository", str(error)) from error
    return jsonify(status=result.status, passed=result.passed, lines=result.lines), 200


@bp.get("/git/auth")
def git_auth() -> tuple[Response, int]:
    """For nginx auth_request: may this caller use the repository in X-Original-URI?"""
    uri = request.headers.get("X-Original-URI", "")
    match = re.match(r"^/git/([a-z0-9-]{1,128})\.git(/|$)", uri)
    settings = state.settings()
    if not match or repo_path(settings.git_root, match.group(1)) is None:
        return jsonify(error="not_found", message="No such repository."), 403
    expected = repo_password(settings.git_hook_secret.get_secret_value(), match.group(1))
    if not _basic_password_matches(expected):
        response = jsonify(error="unauthorized", message="Use the user name and password the bot gave you.")
        response.headers["WWW-Authenticate"] = 'Basic realm="Lessonbot git"'
        return response, 401
    return jsonify(status="ok"), 200


def _basic_password_matches(expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        _, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), expected.encode())
