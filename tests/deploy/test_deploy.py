"""The deployment, end to end: the playbooks against a throwaway Debian 12 machine.

A debootstrapped Debian 12 boots with systemd under systemd-nspawn in its own
network namespace; ``playbooks/site.yml`` installs it over SSH with pebble as
the ACME server; then everything is checked from outside the machine, the way
a user and an operator see it. Needs root and ``tests/deploy/host-setup.sh``.

    sudo tests/deploy/host-setup.sh
    .venv/bin/pytest tests/deploy -v

The tests run in file order and share one machine: each builds on the state
the ones before left (first run, second run, deploy, rollback).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import machine
from tests.deploy.measurements import MEASUREMENTS

# One slow module: the first test alone builds, boots and provisions a machine.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1500)]

# Targets of the issue: minutes from a bare machine to HTTPS, seconds of a
# second site.yml run. Overridable for slow mirrors.
BARE_TO_HTTPS_MINUTES = float(os.environ.get("LESSONBOT_DEPLOY_BUDGET_MINUTES", "6"))
SECOND_RUN_SECONDS = float(os.environ.get("LESSONBOT_DEPLOY_SECOND_RUN_SECONDS", "90"))
# The load generator during deploy.yml: bounded in threads, rate and time.
LOAD_THREADS = 4
LOAD_PAUSE_SECONDS = 0.05
LOAD_MAX_SECONDS = 600

# Release paths the deploy test saw, for the rollback test after it.
RELEASES: dict[str, str] = {}

ACME_CA_ON_MACHINE = "/etc/letsencrypt/lessonbot-acme-ca.pem"
APP_USER = "lessonbot"


@pytest.fixture(scope="module")
def metrics() -> dict[str, object]:
    """Numbers measured along the way, printed in the terminal summary (conftest.py)."""
    MEASUREMENTS.clear()
    return MEASUREMENTS


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout as a release would take it, so that edits made
    while the test runs do not turn into new releases."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_release", machine.REPO_ROOT / "roles/app/files/build_release.py")
    assert spec is not None and spec.loader is not None
    build_release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_release)
    target = tmp_path_factory.mktemp("release-source")
    for name in build_release.release_files(machine.REPO_ROOT):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(machine.REPO_ROOT / name, destination, follow_symlinks=False)
    return target


@pytest.fixture(scope="module")
def environment(
    request: pytest.FixtureRequest, metrics: dict[str, object], snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> machine.TestEnvironment:
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "pebble", "nft", "ssh") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"needs root and tests/deploy/host-setup.sh (missing: {missing or 'root'})")
    test_environment = machine.TestEnvironment()
    test_environment.extra_env = {
        "LESSONBOT_TEST_RELEASE_SOURCE": str(snapshot),
        "LESSONBOT_TEST_BUILD_DIR": str(tmp_path_factory.mktemp("release-build")),
    }
    # Registered before anything starts: a half-started environment is torn down too.
    request.addfinalizer(test_environment.stop)
    started = time.monotonic()
    rootfs = machine.cached_rootfs(print)
    metrics["rootfs_ready_seconds"] = round(time.monotonic() - started, 1)
    test_environment.start()
    metrics["boot_seconds"] = round(time.monotonic() - started - metrics["rootfs_ready_seconds"], 1)
    test_environment.booted_at = time.monotonic()
    assert rootfs.exists()
    return test_environment


@pytest.fixture(scope="module")
def pebble_roots(environment: machine.TestEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The roots of the chains pebble issues, fetched from its management API."""
    assert environment.pebble is not None
    path = tmp_path_factory.mktemp("pebble") / "roots.pem"
    path.write_text(environment.pebble.issuing_roots())
    assert "BEGIN CERTIFICATE" in path.read_text()
    return path


@pytest.fixture(scope="module")
def provisioned(environment: machine.TestEnvironment, metrics: dict[str, object], pebble_roots: Path) -> machine.TestEnvironment:
    """The first site.yml run on the bare machine, until HTTPS answers."""
    started = time.monotonic()
    result = environment.ansible_playbook("site.yml")
    metrics["site_first_run_seconds"] = round(time.monotonic() - started, 1)
    metrics["site_first_run_recap"] = recap(result.stdout)
    assert result.returncode == 0, tail(result)
    response = https_get("/health", pebble_roots)
    assert response.status == 200
    minutes = (time.monotonic() - environment.booted_at) / 60
    metrics["bare_machine_to_https_minutes"] = round(minutes, 2)
    return environment


# --- helpers ---------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    certificate_serial: str = ""

    def json(self) -> dict:
        return json.loads(self.body)


def https_get(path: str, cafile: Path | None, timeout: float = 10) -> Response:
    """GET https://<domain><path> from the machine's outside address, verifying
    the certificate for the domain against cafile (None: no verification)."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl._create_unverified_context()
    raw = socket.create_connection((machine.GUEST_ADDRESS, 443), timeout=timeout)
    tls = context.wrap_socket(raw, server_hostname=machine.DOMAIN)
    serial = certificate_serial(tls.getpeercert(binary_form=True))
    connection = http.client.HTTPConnection(machine.DOMAIN, 443, timeout=timeout)
    connection.sock = tls
    try:
        connection.request("GET", path, headers={"Host": machine.DOMAIN, "Connection": "close"})
        answer = connection.getresponse()
        body = answer.read()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, body, serial)
    finally:
        connection.close()


def http_get(path: str, timeout: float = 10) -> Response:
    connection = http.client.HTTPConnection(machine.GUEST_ADDRESS, 80, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": machine.DOMAIN})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def certificate_serial(der: bytes | None) -> str:
    if not der:
        return ""
    pem = ssl.DER_cert_to_PEM_cert(der)
    result = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, text=True, capture_output=True, check=True)
    return result.stdout.strip()


def recap(output: str) -> str:
    lines = [line for line in output.splitlines() if "ok=" in line and "changed=" in line]
    return lines[-1].strip() if lines else "(no recap)"


def changed_count(output: str) -> int:
    match = re.search(r"changed=(\d+)", recap(output))
    assert match, output[-2000:]
    return int(match.group(1))


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported a change, for failure messages."""
    names, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:"):
            names.append(task)
    return names


def tail(result: subprocess.CompletedProcess, size: int = 6000) -> str:
    return (result.stdout + result.stderr)[-size:]


def on_machine(environment: machine.TestEnvironment, command: str) -> str:
    assert environment.machine is not None
    return environment.machine.ssh(command).stdout


@dataclass
class LoadGenerator:
    """Bounded load on GET /health: a few threads, a pause between requests,
    a hard time limit; stops by itself."""

    cafile: Path
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LoadGenerator:
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        for _ in range(LOAD_THREADS):
            thread = threading.Thread(target=self._loop, args=(deadline,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _loop(self, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                response = https_get("/health", self.cafile, timeout=30)
                outcome = "" if response.status == 200 else f"HTTP {response.status}"
            except OSError as error:
                outcome = f"{type(error).__name__}: {error}"
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
            self.stop.wait(LOAD_PAUSE_SECONDS)

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def current_release(environment: machine.TestEnvironment) -> str:
    return on_machine(environment, "readlink -f /opt/lessonbot/current").strip()


def uwsgi_worker_dirs(environment: machine.TestEnvironment) -> set[str]:
    """Working directories of the uWSGI processes (the release they run)."""
    output = on_machine(environment, "for pid in $(pgrep -x uwsgi); do readlink /proc/$pid/cwd; done")
    return set(output.split())


# --- the checks, in order --------------------------------------------------


def test_first_site_run_reaches_https_within_budget(provisioned: machine.TestEnvironment, metrics: dict[str, object]) -> None:
    assert metrics["bare_machine_to_https_minutes"] <= BARE_TO_HTTPS_MINUTES


def test_health_answers_over_https_with_the_acme_certificate(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    # Verified against pebble's issuing root: not the self-signed bootstrap certificate.
    response = https_get("/health", pebble_roots)
    assert response.status == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["database"]["dialect"] == "postgresql"


def test_https_sends_hsts_and_security_headers(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    headers = https_get("/health", pebble_roots).headers
    assert "max-age=" in headers["strict-transport-security"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    context = ssl.create_default_context(cafile=str(pebble_roots))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), socket.create_connection((machine.GUEST_ADDRESS, 443), timeout=10) as raw:
        context.wrap_socket(raw, server_hostname=machine.DOMAIN)


def test_http_redirects_to_https(provisioned: machine.TestEnvironment) -> None:
    response = http_get("/health?probe=1")
    assert response.status == 301
    assert response.headers["location"] == f"https://{machine.DOMAIN}/health?probe=1"


def test_internal_routes_are_forbidden_from_outside(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    assert https_get("/internal/anything", pebble_roots).status == 403
    assert http_get("/internal/anything").status == 403


def test_git_auth_endpoint_is_not_reachable_directly(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    # Only nginx's auth_request subrequest may call it.
    assert https_get("/git/auth", pebble_roots).status == 404


CREATE_REPO = """
import json
from app.git.repos import create_repo
from app.settings import load_settings
settings = load_settings()
repo = create_repo(settings.git_root, "deploy-test", "ops@lessonbot.test",
                   hook_secret=settings.git_hook_secret.get_secret_value(),
                   hook_url=settings.hook_url, public_url=settings.git_public_url)
print(json.dumps({"name": repo.name, "url": repo.clone_url, "user": repo.user, "password": repo.password}))
"""


def host_git(*args: str, cwd: Path, cafile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "git",
            "-c",
            f"http.sslCAInfo={cafile}",
            "-c",
            f"http.curloptResolve={machine.DOMAIN}:443:{machine.GUEST_ADDRESS}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=dict(
            os.environ,
            GIT_SSL_CAINFO=str(cafile),
            GIT_TERMINAL_PROMPT="0",
            GIT_AUTHOR_NAME="Deploy Test",
            GIT_AUTHOR_EMAIL="ops@lessonbot.test",
            GIT_COMMITTER_NAME="Deploy Test",
            GIT_COMMITTER_EMAIL="ops@lessonbot.test",
        ),
    )


def test_git_over_https_needs_the_run_credentials_and_accepts_a_push(
    provisioned: machine.TestEnvironment, pebble_roots: Path, tmp_path: Path
) -> None:
    # A hosted repository made by the app itself, as the app user.
    created = on_machine(
        provisioned,
        "cd /opt/lessonbot/current && sudo -u lessonbot LESSONBOT_ENV_FILE=/etc/lessonbot/lessonbot.env "
        f".venv/bin/python -c '{CREATE_REPO}'",
    )
    repo = json.loads(created.strip().splitlines()[-1])
    assert repo["url"].startswith(f"https://{machine.DOMAIN}/git/")

    anonymous = host_git("clone", repo["url"], "anonymous", cwd=tmp_path, cafile=pebble_roots)
    assert anonymous.returncode != 0
    assert (
        "401" in anonymous.stderr or "Authentication failed" in anonymous.stderr or "could not read Username" in anonymous.stderr
    ), anonymous.stderr

    with_credentials = repo["url"].replace("https://", f"https://{repo['user']}:{repo['password']}@")
    cloned = host_git("clone", with_credentials, "work", cwd=tmp_path, cafile=pebble_roots)
    assert cloned.returncode == 0, cloned.stderr
    work = tmp_path / "work"
    (work / "README.md").write_text("pushed by the deploy test\n")
    assert host_git("add", "README.md", cwd=work, cafile=pebble_roots).returncode == 0
    assert host_git("commit", "-m", "First commit", cwd=work, cafile=pebble_roots).returncode == 0
    pushed = host_git("push", "origin", "HEAD:main", cwd=work, cafile=pebble_roots)
    assert pushed.returncode == 0, pushed.stderr
    log = on_machine(provisioned, f"git --git-dir=/var/lib/lessonbot/git/{repo['name']}.git log --format=%s main")
    assert log.strip() == "First commit"


def test_every_supervisor_worker_is_running(provisioned: machine.TestEnvironment) -> None:
    deadline = time.monotonic() + 30
    while True:
        lines = on_machine(provisioned, "supervisorctl status || true").strip().splitlines()
        states = {line.split()[0]: line.split()[1] for line in lines if line.strip()}
        if states and all(state == "RUNNING" for state in states.values()):
            break
        assert time.monotonic() < deadline, f"supervisorctl status:\n{chr(10).join(lines)}"
        time.sleep(2)
    assert "lessonbot:poller" in states


def test_env_file_is_private_to_the_app_user(provisioned: machine.TestEnvironment) -> None:
    mode = on_machine(provisioned, "stat -c '%a %U %G' /etc/lessonbot/lessonbot.env").split()
    assert mode == ["600", APP_USER, APP_USER]


def test_only_ssh_http_and_https_listen_outside(provisioned: machine.TestEnvironment) -> None:
    listening = on_machine(provisioned, "ss -Hltnu").splitlines()
    outside_ports = set()
    for line in listening:
        local = line.split()[4]
        address, port = local.rsplit(":", 1)
        if address.strip("[]") not in ("127.0.0.1", "::1") and not address.startswith("127."):
            outside_ports.add(int(port))
    assert outside_ports <= {22, 80, 443}, listening
    # And the firewall drops the rest even if something listened.
    for port in (5432, 25, 8080, 9191):
        with pytest.raises(OSError):
            socket.create_connection((machine.GUEST_ADDRESS, port), timeout=2).close()


def test_certbot_timer_is_off_and_cron_renews(provisioned: machine.TestEnvironment) -> None:
    timer = provisioned.machine.ssh("systemctl is-enabled certbot.timer", check=False).stdout.strip()
    assert timer in ("disabled", "masked")
    assert "certbot renew" in on_machine(provisioned, "cat /etc/cron.d/lessonbot-certbot")


def test_forced_renewal_changes_the_served_certificate(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    before = https_get("/health", pebble_roots).certificate_serial
    result = provisioned.machine.ssh(
        f"REQUESTS_CA_BUNDLE={ACME_CA_ON_MACHINE} certbot renew --force-renewal --no-random-sleep-on-renew", check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    deadline = time.monotonic() + 20
    while (after := https_get("/health", pebble_roots).certificate_serial) == before:
        assert time.monotonic() < deadline, "nginx still serves the old certificate"
        time.sleep(1)
    assert after and after != before


def test_second_site_run_changes_nothing(provisioned: machine.TestEnvironment, metrics: dict[str, object]) -> None:
    started = time.monotonic()
    result = provisioned.ansible_playbook("site.yml")
    seconds = time.monotonic() - started
    metrics["site_second_run_seconds"] = round(seconds, 1)
    metrics["site_second_run_recap"] = recap(result.stdout)
    print(recap(result.stdout))
    assert result.returncode == 0, tail(result)
    assert changed_count(result.stdout) == 0, changed_tasks(result.stdout)
    assert seconds <= SECOND_RUN_SECONDS


def test_deploy_under_load_drops_no_request(
    provisioned: machine.TestEnvironment, pebble_roots: Path, metrics: dict[str, object]
) -> None:
    before = current_release(provisioned)
    with LoadGenerator(pebble_roots) as load:
        time.sleep(2)
        started = time.monotonic()
        result = provisioned.ansible_playbook("deploy.yml")
        metrics["deploy_seconds"] = round(time.monotonic() - started, 1)
        time.sleep(3)
    metrics["deploy_requests_ok"] = load.ok
    metrics["deploy_requests_failed"] = len(load.failures)
    assert result.returncode == 0, tail(result)
    after = current_release(provisioned)
    assert after != before
    assert load.ok > 50
    assert load.failures == [], load.failures[:10]
    deadline = time.monotonic() + 30
    while uwsgi_worker_dirs(provisioned) != {after}:
        assert time.monotonic() < deadline, uwsgi_worker_dirs(provisioned)
        time.sleep(1)
    RELEASES["before_deploy"] = before


def test_rollback_serves_the_previous_release(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    previous = RELEASES.get("before_deploy")
    assert previous, "needs the deploy test before it"
    result = provisioned.ansible_playbook("rollback.yml")
    assert result.returncode == 0, tail(result)
    assert current_release(provisioned) == previous
    deadline = time.monotonic() + 30
    while uwsgi_worker_dirs(provisioned) != {previous}:
        assert time.monotonic() < deadline, uwsgi_worker_dirs(provisioned)
        time.sleep(1)
    response = https_get("/health", pebble_roots)
    assert response.status == 200 and response.json()["status"] == "ok"
    test_every_supervisor_worker_is_running(provisioned)
