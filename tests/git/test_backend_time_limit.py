"""The git-http-backend wrapper installed by the nginx role ends any git request after its time limit (issue 9, item 2)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.helpers import git
from tests.stack import STACK_MARKER, leftover_processes, render_role_template


def test_a_stalled_git_request_is_ended_after_the_time_limit(tmp_path: Path) -> None:
    """A push that declares more body than it sends would hold a fcgiwrap slot for ever; the wrapper ends it."""
    wrapper = tmp_path / "git-http-backend"
    wrapper.write_text(render_role_template("nginx", "usr/local/libexec/lessonbot-git-http-backend.j2",
                                            {"nginx_git_request_timeout": 2}))
    wrapper.chmod(0o755)
    git(tmp_path, "init", "-q", "--bare", "r.git")
    git(tmp_path / "r.git", "config", "http.receivepack", "true")
    environment = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(tmp_path), "GIT_HTTP_EXPORT_ALL": "",
                   "REQUEST_METHOD": "POST", "PATH_INFO": "/r.git/git-receive-pack", "REMOTE_USER": "student",
                   "CONTENT_TYPE": "application/x-git-receive-pack-request", "CONTENT_LENGTH": "100000",
                   STACK_MARKER: str(tmp_path)}
    read_end, write_end = os.pipe()
    started = time.monotonic()
    try:
        process = subprocess.Popen([str(wrapper)], stdin=read_end, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=environment)
        os.close(read_end)
        os.write(write_end, b"0000")  # a few bytes of the 100000 declared; the pipe stays open
        returncode = process.wait(timeout=30)
    finally:
        os.close(write_end)
    assert time.monotonic() - started < 15
    assert returncode in (124, 137)  # timeout(1): TERM after the limit (124), KILL after --kill-after (137)
    assert leftover_processes(tmp_path) == []
