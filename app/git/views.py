"""POST /git/hook (signed push events) and GET /git/auth (nginx auth_request for HTTPS git)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field

from app import current
from app.db import db
from app.git.access import GitAccessDenied, GitBadCredentials, authorize
from app.git.service import ReplayedSignature, UnknownRepository, handle_push, remember_signature
from app.git.signing import REPO_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, BadSignature, repo_hook_key, verify
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
    """The repository named in the signed headers, once the body's signature checks out and is new; 401 otherwise."""
    name = request.headers.get(REPO_HEADER, "")
    if not re.fullmatch(r"[a-z0-9-]{1,128}", name):
        raise ApiError(401, "bad_signature", "The X-Lessonbot-Repo header does not name a repository.")
    secret = current.settings().git_hook_secret.get_secret_value()
    signature = request.headers.get(SIGNATURE_HEADER)
    try:
        timestamp = verify(repo_hook_key(secret, name), request.headers.get(TIMESTAMP_HEADER), signature,
                           request.get_data(cache=True))
        remember_signature(str(signature), timestamp)
    except (BadSignature, ReplayedSignature) as error:
        raise ApiError(401, "bad_signature", str(error)) from error
    db.session.commit()  # remembered before the event is acted on: a concurrent replay waits, then fails
    return name


@bp.post("/git/hook")
def git_hook() -> tuple[Response, int]:
    signed_name = _verified_repo_name()
    event = json_body(PushEvent)
    if event.repo != signed_name:
        raise ApiError(401, "bad_signature", "The signed repository does not match the body.")
    try:
        result = handle_push(event.repo, current.catalog(), current.settings())
    except UnknownRepository as error:
        raise ApiError(404, "unknown_repository", str(error)) from error
    return jsonify(status=result.status, passed=result.passed, lines=result.lines), 200


@bp.get("/git/auth")
def git_auth() -> tuple[Response, int]:
    """For nginx auth_request: may this caller use the repository nginx is about to serve (X-Original-URI)?"""
    settings = current.settings()
    try:
        authorize(request.headers.get("X-Original-URI", ""), request.headers.get("Authorization", ""),
                  settings.git_root, settings.git_hook_secret.get_secret_value())
    except GitAccessDenied as error:
        return jsonify(error="forbidden", message=str(error)), 403
    except GitBadCredentials as error:
        response = jsonify(error="unauthorized", message=str(error))
        response.headers["WWW-Authenticate"] = 'Basic realm="Lessonbot git"'
        return response, 401
    return jsonify(status="ok"), 200
