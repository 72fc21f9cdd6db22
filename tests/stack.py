"""The production web stack on loopback: the nginx site and uWSGI ini rendered from the Ansible roles,
uWSGI serving ``app.wsgi:app``, fcgiwrap running git-http-backend, and a given PostgreSQL database.

Tests that attack the web path (git over HTTPS, hook signatures) run against this, so what they
prove holds for the configuration that is deployed, not for a hand-written copy of it. Every
process started here carries ``LESSONBOT_STACK=<root>`` in its environment; stopping the stack
ends all of them, and `leftover_processes()` finds any that survived.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import jinja2
import yaml

from app.settings import PROJECT_ROOT
from tests import lifetime
from tests.pg import free_port

ROLES = PROJECT_ROOT / "roles"
SITE_TEMPLATE = "etc/nginx/sites-available/lessonbot.conf.j2"
STACK_MARKER = "LESSONBOT_STACK"
MAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
  include {conf}/mime.types;
  default_type application/octet-stream;
  access_log {root}/nginx-access.log;
  client_body_temp_path {root}/tmp/client_body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  include {conf}/sites-enabled/*.conf;
}}
"""


def role_defaults(role: str) -> dict[str, Any]:
    """A role's defaults/main.yml as Ansible would see them (values may refer to each other)."""
    loaded: dict[str, Any] = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    return loaded


def _resolve(values: dict[str, Any]) -> dict[str, Any]:
    """Expand ``{{ other_variable }}`` inside string values, as Ansible does lazily."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    resolved = dict(values)
    for _ in range(5):
        resolved = {key: environment.from_string(value).render(resolved) if isinstance(value, str) else value
                    for key, value in resolved.items()}
    return resolved


def render_role_template(role: str, template: str, overrides: dict[str, Any]) -> str:
    """Render one of a role's templates with its defaults plus test values (StrictUndefined: no typos)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLES / role / "templates"),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    values = _resolve({"ansible_managed": "rendered by tests/stack.py", **role_defaults(role), **overrides})
    return environment.get_template(template).render(values)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, valid for a day, signed by itself."""
    certificate, key = directory / "stack.crt", directory / "stack.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True)
    return certificate, key


@dataclass
class Stack:
    """A running stack; URLs are on 127.0.0.1, TLS with `cafile` as the only trusted certificate."""

    root: Path
    https_url: str
    http_url: str
    git_root: Path
    cafile: Path
    hook_secret: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def git_url(self) -> str:
        """The base of the clone URLs, as LESSONBOT_GIT_PUBLIC_URL."""
        return f"{self.https_url}/git"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""


def _process_env(root: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            STACK_MARKER: str(root), **extra}


def leftover_processes(root: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every live process started by the stack at `root`."""
    marker = f"{STACK_MARKER}={root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


def _render_nginx(root: Path, conf: Path, values: dict[str, Any]) -> None:
    (conf / "sites-enabled").mkdir(parents=True)
    (conf / "snippets").mkdir()
    for name in ("uwsgi_params", "fastcgi_params", "mime.types"):  # shipped by Debian's nginx, as in production
        shutil.copy(Path("/etc/nginx") / name, conf / name)
    (conf / "snippets" / "lessonbot-security-headers.conf").write_text(
        render_role_template("nginx", "etc/nginx/snippets/lessonbot-security-headers.conf.j2", values))
    (conf / "sites-enabled" / "lessonbot.conf").write_text(render_role_template("nginx", SITE_TEMPLATE, values))
    (conf / "nginx.conf").write_text(MAIN_CONF.format(root=root, conf=conf))
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / temp).mkdir(parents=True, exist_ok=True)


def _start_fcgiwrap(root: Path, socket_path: Path, children: int) -> subprocess.Popen[bytes]:
    """fcgiwrap on a socket handed over as stdin, as systemd's lessonbot-git.socket does."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(64)
    try:
        log = open(root / "fcgiwrap.log", "wb")  # noqa: SIM115 - owned by the process
        return lifetime.popen(["fcgiwrap", "-c", str(children)], stdin=listener.fileno(), stdout=log, stderr=log,
                                env=_process_env(root), start_new_session=True)
    finally:
        listener.close()


UPSTREAM_NOT_READY = (502, 504)


def wait_answering(url: str, context: ssl.SSLContext | None = None, processes: Sequence[subprocess.Popen[bytes]] = (),
                   timeout: float = 60) -> None:
    """Wait until the app behind ``url`` answers, whatever its status (/health is 503 while no worker beats);
    nginx's own 502 and 504 mean the app is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode} during start-up")
        try:
            with urlopen(url, timeout=2, context=context):
                return
        except HTTPError as error:
            if error.code not in UPSTREAM_NOT_READY:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.2)


def _stop(stack_root: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (nginx: SIGQUIT, graceful) to each, wait, then SIGKILL whatever is left of the stack."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT if process.args[0] == "nginx" else signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pid, _ in leftover_processes(stack_root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_stack(database_url: str, secrets: dict[str, str], *, app_settings: dict[str, str] | None = None,
                  nginx: dict[str, Any] | None = None, uwsgi: dict[str, Any] | None = None,
                  uwsgi_environment: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start nginx + uWSGI + fcgiwrap on loopback ports against `database_url` (already migrated).

    `uwsgi_environment` adds to the app's process environment what is not a setting, such as
    REQUESTS_CA_BUNDLE naming a test server's CA (production trusts the system's CAs).
    """
    root = lifetime.this_process_record().tempdir("stack-")  # removed by the next session if we are killed
    root.chmod(0o755)
    http_port, https_port = free_port(), free_port()
    certificate, key = self_signed(root)
    git_root = root / "git"
    git_root.mkdir()
    https_url, http_url = f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}"
    settings = {
        "DATABASE_URL": database_url, "LESSONBOT_SECRET_KEY": secrets["secret_key"],
        "LESSONBOT_INTERNAL_TOKEN": secrets["internal_token"], "LESSONBOT_GIT_HOOK_SECRET": secrets["git_hook_secret"],
        "LESSONBOT_GIT_ROOT": str(git_root), "LESSONBOT_GIT_PUBLIC_URL": f"{https_url}/git",
        "LESSONBOT_HOOK_URL": f"{http_url}/git/hook", "LESSONBOT_PUBLIC_URL": https_url,
        "LESSONBOT_LOG_LEVEL": "WARNING", "LESSONBOT_DEFAULT_LANGUAGE": "en", **(app_settings or {}),
    }
    env_file = root / "lessonbot.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    env_file.chmod(0o600)
    nginx_values = {
        "nginx_server_name": "localhost", "nginx_ipv6": False, "nginx_http_port": http_port,
        "nginx_https_port": https_port, "nginx_use_issued_certificate": True,
        "nginx_tls_certificate": str(certificate), "nginx_tls_certificate_key": str(key),
        "nginx_acme_webroot": str(root / "acme"), "nginx_uwsgi_socket": str(root / "uwsgi.sock"),
        "nginx_git_root": str(git_root), "nginx_git_socket": str(root / "git.sock"),
        "nginx_git_backend_wrapper": str(root / "git-http-backend"),
        # Every test request comes from 127.0.0.1: the per-address limit would throttle the tests themselves.
        "nginx_limit_req_rate": "1000r/s", "nginx_limit_req_burst": 1000, **(nginx or {}),
    }
    uwsgi_values = {
        "uwsgi_app_dir": str(PROJECT_ROOT), "uwsgi_env_file": str(env_file), "uwsgi_user": "root",
        "uwsgi_socket_group": "root", "uwsgi_runtime_dir": str(root), "uwsgi_metrics_dir": str(root / "metrics"),
        "uwsgi_processes": 2, **(uwsgi or {}),
    }
    conf = root / "nginx"
    processes: list[subprocess.Popen[bytes]] = []
    try:  # whatever was started is stopped again, also when a later step fails
        _render_nginx(root, conf, nginx_values)
        wrapper = Path(nginx_values["nginx_git_backend_wrapper"])
        wrapper.write_text(render_role_template("nginx", "usr/local/libexec/lessonbot-git-http-backend.j2", nginx_values))
        wrapper.chmod(0o755)
        ini = root / "uwsgi.ini"
        ini.write_text(render_role_template("uwsgi", "etc/lessonbot/uwsgi.ini.j2", uwsgi_values))
        uwsgi_binary = str(PROJECT_ROOT / ".venv" / "bin" / "uwsgi")
        if not Path(uwsgi_binary).exists():
            uwsgi_binary = str(Path(sys.executable).parent / "uwsgi")
        log = open(root / "uwsgi.log", "wb")  # noqa: SIM115 - owned by the process
        processes.append(lifetime.popen([uwsgi_binary, "--ini", str(ini)], cwd=PROJECT_ROOT, stdout=log, stderr=log,
                                          env=_process_env(root, **(uwsgi_environment or {})), start_new_session=True))
        children = {**role_defaults("nginx"), **nginx_values}["nginx_git_fcgiwrap_children"]
        processes.append(_start_fcgiwrap(root, Path(nginx_values["nginx_git_socket"]), int(children)))
        subprocess.run(["nginx", "-t", "-q", "-c", str(conf / "nginx.conf"), "-p", str(root)], check=True,
                       capture_output=True, env=_process_env(root))
        log = open(root / "nginx.log", "wb")  # noqa: SIM115 - owned by the process
        processes.append(lifetime.popen(["nginx", "-c", str(conf / "nginx.conf"), "-p", str(root)], stdout=log,
                                          stderr=log, env=_process_env(root), start_new_session=True))
        stack = Stack(root, https_url, http_url, git_root, certificate, secrets["git_hook_secret"], processes)
        wait_answering(f"{https_url}/health", stack.ssl_context(), processes)
        yield stack
    finally:
        _stop(root, processes)
        shutil.rmtree(root, ignore_errors=True)
