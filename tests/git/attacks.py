"""Attacks on git over HTTPS, reusable against any deployment (the loopback stack, the deploy test's machine).

Every function takes the git base URL (``https://host[:port]/git``, as LESSONBOT_GIT_PUBLIC_URL), the
CA file that signs its certificate, and a run's credentials. Nothing here asserts: the callers
decide what counts as refused, so the same helpers serve before/after comparisons.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

ZERO_ID = "0" * 40

# Paths that start in the attacker's repository A and end in the victim's B (git base URL relative).
# curl (under git) squashes literal dot segments itself; raw_get/raw_push send each path byte for byte.
TRAVERSALS: dict[str, str] = {
    "percent-dot": "{a}.git/%2e%2e/{b}.git",
    "percent-dot-upper": "{a}.git/%2E%2E/{b}.git",
    "percent-dot-mixed": "{a}.git/%2e%2E/{b}.git",
    "half-encoded-dot": "{a}.git/.%2e/{b}.git",
    "dot-dot": "{a}.git/../{b}.git",
    "dot-dot-deeper": "{a}.git/info/../../{b}.git",
    "double-slash": "{a}.git//..//{b}.git",
    "double-encoded": "{a}.git/%252e%252e/{b}.git",
    "encoded-slash": "{a}.git/..%2f{b}.git",
    "encoded-slashes-only": "{a}.git%2f..%2f{b}.git",
}


@dataclass(frozen=True)
class Target:
    """Where git is served and whom to trust for its certificate."""

    git_url: str                    # https://host[:port]/git
    cafile: Path | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.git_url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.git_url).port or 443

    @property
    def base_path(self) -> str:
        return urlsplit(self.git_url).path.rstrip("/")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)

    def url(self, relative: str, user: str | None = None, password: str | None = None) -> str:
        """An https URL for a path relative to the git base, credentials embedded when given."""
        parts = urlsplit(self.git_url)
        auth = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user is not None else ""
        return f"{parts.scheme}://{auth}{parts.netloc}{self.base_path}/{relative}"


def git_env(target: Target, home: Path) -> dict[str, str]:
    """A git environment with no user config, no prompts and only the target's CA trusted."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "LC_ALL": "C",
           "GIT_AUTHOR_NAME": "Attacker", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "Attacker", "GIT_COMMITTER_EMAIL": "a@example.com"}
    if target.cafile:
        env["GIT_SSL_CAINFO"] = str(target.cafile)
    return env


def run_git(target: Target, cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=git_env(target, cwd), capture_output=True, text=True,
                          timeout=timeout)


def clone(target: Target, relative: str, user: str, password: str, into: Path,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`git clone` of a path relative to the git base with these credentials (into must not exist)."""
    into.parent.mkdir(parents=True, exist_ok=True)
    return run_git(target, into.parent, "clone", "-q", target.url(relative, user, password), into.name,
                   timeout=timeout)


def commit(target: Target, work: Path, name: str, content: bytes | str, message: str) -> str:
    """Write and commit one file in a work tree; the new commit id."""
    data = content.encode() if isinstance(content, str) else content
    (work / name).write_bytes(data)
    for args in (("add", name), ("commit", "-qm", message)):
        result = run_git(target, work, *args)
        if result.returncode:
            raise RuntimeError(f"git {args[0]}: {result.stderr}")
    return run_git(target, work, "rev-parse", "HEAD").stdout.strip()


def new_work_tree(target: Target, where: Path, marker: str) -> tuple[Path, str]:
    """A fresh local repository with one commit (file `attack.txt` holding the marker)."""
    where.mkdir(parents=True)
    run_git(target, where, "init", "-q", "--initial-branch=main")
    return where, commit(target, where, "attack.txt", marker + "\n", f"attack {marker}")


def push(target: Target, work: Path, relative: str, user: str, password: str, refspec: str = "HEAD:refs/heads/main",
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`git push` from a work tree to a path relative to the git base."""
    return run_git(target, work, "push", "--force", target.url(relative, user, password), refspec, timeout=timeout)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _connection(target: Target, timeout: float) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(target.host, target.port, context=target.ssl_context(), timeout=timeout)


def raw_request(target: Target, method: str, path: str, user: str, password: str, body: bytes = b"",
                content_type: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """One request whose path (relative to the git base) goes on the wire exactly as given."""
    connection = _connection(target, timeout)
    try:
        connection.putrequest(method, f"{target.base_path}/{path}", skip_accept_encoding=True)
        connection.putheader("Authorization", _basic(user, password))
        if content_type:
            connection.putheader("Content-Type", content_type)
        if method == "POST":
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw_refs(target: Target, repo_path: str, user: str, password: str, service: str = "git-upload-pack") -> tuple[int, bytes]:
    """GET <repo_path>/info/refs?service=…: the smart-HTTP advertisement (a 200 lists the repository's refs)."""
    return raw_request(target, "GET", f"{repo_path}/info/refs?service={service}", user, password)


def _pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def receive_pack_body(target: Target, work: Path, new: str, ref: str = "refs/heads/main", old: str = ZERO_ID) -> bytes:
    """The body git push would POST to git-receive-pack: one ref update and a pack with the commit's history."""
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], input=f"{new}\n".encode(), cwd=work,
                          env=git_env(target, work), capture_output=True, check=True, timeout=60).stdout
    return _pkt(f"{old} {new} {ref}\0 report-status\n".encode()) + b"0000" + pack


def raw_push(target: Target, repo_path: str, user: str, password: str, work: Path, new: str,
             ref: str = "refs/heads/main", old: str = ZERO_ID) -> tuple[int, bytes]:
    """POST <repo_path>/git-receive-pack with the path sent byte for byte (what git push sends after info/refs)."""
    body = receive_pack_body(target, work, new, ref, old)
    return raw_request(target, "POST", f"{repo_path}/git-receive-pack", user, password, body,
                       "application/x-git-receive-pack-request")


def half_sent_pushes(target: Target, repo: str, user: str, password: str, count: int, declared: int = 100_000,
                     sent: bytes = b"0000", hold_seconds: float = 0.5) -> None:
    """`count` authenticated POSTs to git-receive-pack that declare `declared` bytes, send a few and close."""
    sockets = []
    head = (f"POST {target.base_path}/{repo}.git/git-receive-pack HTTP/1.1\r\nHost: {target.host}\r\n"
            f"Authorization: {_basic(user, password)}\r\nContent-Type: application/x-git-receive-pack-request\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    context = target.ssl_context()
    try:
        for _ in range(count):
            raw = socket.create_connection((target.host, target.port), timeout=10)
            wrapped = context.wrap_socket(raw, server_hostname=target.host)
            wrapped.sendall(head + sent)
            sockets.append(wrapped)
        time.sleep(hold_seconds)  # let the server start on each before the clients vanish
    finally:
        for each in sockets:
            each.close()


def timed_clone(target: Target, repo: str, user: str, password: str, into: Path,
                timeout: float = 60) -> tuple[float, subprocess.CompletedProcess[str] | None]:
    """Seconds a normal clone takes, and its result (None: it did not finish within `timeout`)."""
    started = time.monotonic()
    try:
        result = clone(target, f"{repo}.git", user, password, into, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, None
    return time.monotonic() - started, result


def zeros_push(target: Target, work: Path, size: int, name: str = "README.md") -> str:
    """Commit a file of `size` zero bytes (compresses to almost nothing); the new commit id."""
    with open(work / name, "wb") as handle:
        handle.truncate(size)
    for args in (("add", name), ("commit", "-qm", f"{size} zero bytes")):
        result = run_git(target, work, *args, timeout=300)
        if result.returncode:
            raise RuntimeError(f"git {args[0]}: {result.stderr}")
    return run_git(target, work, "rev-parse", "HEAD").stdout.strip()


def malformed_commit(target: Target, where: Path) -> tuple[Path, str]:
    """A local repository whose only commit is malformed (an author without an email), as git fsck sees it."""
    where.mkdir(parents=True)
    run_git(target, where, "init", "-q", "--initial-branch=main")
    tree = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--stdin"], input=b"", cwd=where,
                          env=git_env(target, where), capture_output=True, check=True).stdout.decode().strip()
    body = f"tree {tree}\nauthor Attacker 1700000000 +0000\ncommitter Attacker 1700000000 +0000\n\nmalformed\n"
    commit_id = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"],
                               input=body.encode(), cwd=where, env=git_env(target, where), capture_output=True,
                               check=True).stdout.decode().strip()
    return where, commit_id
