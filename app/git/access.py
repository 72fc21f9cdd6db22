"""Who may use which hosted repository over HTTPS (nginx asks through auth_request).

The path authorised must be exactly the path git-http-backend will serve: nginx passes its
normalised, percent-decoded `$uri` (`/git` + what git-http-backend gets as PATH_INFO), and this
module accepts only the handful of paths the git protocols use below one repository. Anything
with dot segments, empty segments or percent signs (double encoding) is refused rather than
interpreted, so no spelling of `<mine>.git/../<theirs>.git` can be authorised as `<mine>`.
"""

from __future__ import annotations

import base64
import hmac
import re
from pathlib import Path

from app.git.repos import repo_path
from app.git.signing import repo_password

# What git's smart and dumb HTTP protocols ask for below <repo>.git (see git-http-backend(1), "services").
_GIT_PATH = re.compile(
    r"/git/(?P<repo>[a-z0-9][a-z0-9-]{0,127})\.git"
    r"(?:/|/info/refs|/git-upload-pack|/git-receive-pack|/HEAD"
    r"|/objects/info/(?:alternates|http-alternates|packs)"
    r"|/objects/[0-9a-f]{2}/[0-9a-f]{38}|/objects/pack/pack-[0-9a-f]{40}\.(?:pack|idx))?"
)


class GitAccessDenied(Exception):
    """The request names no hosted repository in a form we serve; the message says why."""


class GitBadCredentials(Exception):
    """The password is not the one for the repository named (whether or not it exists)."""


def requested_repo(uri: str) -> str:
    """The one repository a git request path names, or GitAccessDenied.

    `uri` is nginx's normalised path; a query string (older nginx configurations passed
    $request_uri) is ignored, as git-http-backend takes the service from QUERY_STRING.
    """
    path = uri.split("?", 1)[0]
    segments = path.split("/")[1:]
    if "%" in path or "\\" in path or any(segment in ("", ".", "..") for segment in segments[:-1]):
        raise GitAccessDenied("The path has dot segments, empty segments or encoded characters.")
    match = _GIT_PATH.fullmatch(path)
    if match is None:
        raise GitAccessDenied("The path is not a git request for one repository.")
    return match.group("repo")


def authorize(uri: str, authorization: str, git_root: Path, hook_secret: str) -> str:
    """The repository the caller may use; GitAccessDenied or GitBadCredentials otherwise.

    The password comes first: without it a missing repository and an existing one get the
    same 401, so nobody can probe which names exist. (Each password is derived from its
    repository's name, so only someone the bot gave one can learn that a repository is gone.)
    """
    name = requested_repo(uri)
    if not _basic_password_matches(authorization, repo_password(hook_secret, name)):
        raise GitBadCredentials("Use the user name and password the bot gave you.")
    if repo_path(git_root, name) is None:
        raise GitAccessDenied("No such repository.")
    return name


def _basic_password_matches(header: str, expected: str) -> bool:
    if not header.startswith("Basic "):
        return False
    try:
        _, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), expected.encode())
