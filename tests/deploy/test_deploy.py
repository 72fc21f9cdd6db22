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

import base64
import http.client
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zulip

from app.i18n import LANGUAGES, Text
from tests.deploy import machine
from tests.deploy.measurements import MEASUREMENTS
from tests.git import attacks

# One slow module: the first test alone builds, boots and provisions a machine.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1500)]

# Targets: minutes from a bare machine to HTTPS, seconds of a second site.yml run.
# Measured and printed beside their targets in the summary, not asserted: a shared,
# loaded machine must not fail the suite on speed (speed lives in bench/).
BARE_TO_HTTPS_MINUTES = 6.0
SECOND_RUN_SECONDS = 90.0
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


def against_target(value: float, target: float) -> str:
    return f"{value:.2f} (target {target:g}: {value / target:.2f}x)"


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
    # A release is packed from the tracked files of a checkout: make the copy one.
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=target, check=True, capture_output=True)
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
    wait_healthy(pebble_roots, "the first install")
    minutes = (time.monotonic() - environment.booted_at) / 60
    metrics["bare_machine_to_https_minutes"] = against_target(minutes, BARE_TO_HTTPS_MINUTES)
    return environment


# --- helpers ---------------------------------------------------------------


def wait_healthy(pebble_roots: Path, what: str, timeout: float = 90) -> None:
    """/health answers 200 once every required worker beats (503 "degraded" before)."""
    deadline = time.monotonic() + timeout
    while (response := https_get("/health", pebble_roots)).status != 200:
        assert time.monotonic() < deadline, f"{what}: /health still answers {response.status}: {response.body[:500]!r}"
        time.sleep(1)


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


def test_health_answers_over_https_with_the_acme_certificate(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    # Verified against pebble's issuing root: not the self-signed bootstrap certificate.
    response = https_get("/health", pebble_roots)
    assert response.status == 200
    assert response.json() == {"status": "ok"}  # the world learns no details
    # The machine itself (a monitoring agent, an admin's curl) gets every component.
    body = json.loads(on_machine(provisioned, f"curl -sk --resolve {machine.DOMAIN}:443:127.0.0.1 "
                                              f"https://{machine.DOMAIN}/health"))
    assert body["status"] == "ok" and body["components"]["database"]["dialect"] == "postgresql"
    assert {name: worker["status"] for name, worker in body["components"]["workers"].items()} == {
        "dispatcher": "ok", "poller": "ok", "receiver": "ok"}


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
repo = create_repo(settings.git_root, "deploy-test", "STUDENT_EMAIL",
                   hook_secret=settings.git_hook_secret.get_secret_value(),
                   hook_url=settings.hook_url, public_url=settings.git_public_url)
print(json.dumps({"name": repo.name, "url": repo.clone_url, "user": repo.user, "password": repo.password}))
"""


def hosted_repo(environment: machine.TestEnvironment, student_email: str = "ops@lessonbot.test") -> dict[str, str]:
    """A hosted repository made by the app itself, as the app user: name, url, user, password."""
    created = on_machine(
        environment,
        "cd /opt/lessonbot/current && sudo -u lessonbot LESSONBOT_ENV_FILE=/etc/lessonbot/lessonbot.env "
        f".venv/bin/python -c '{CREATE_REPO.replace('STUDENT_EMAIL', student_email)}'",
    )
    return json.loads(created.strip().splitlines()[-1])


def host_git(*args: str, cwd: Path, cafile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
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
        timeout=timeout,
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
    repo = hosted_repo(provisioned)
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
    assert {"lessonbot:poller", "lessonbot:receiver", "lessonbot:dispatcher"} <= set(states)


def test_metrics_answer_on_the_machine_and_are_refused_from_outside(provisioned: machine.TestEnvironment,
                                                                   pebble_roots: Path) -> None:
    assert https_get("/metrics", pebble_roots).status == 403
    assert http_get("/metrics").status == 403
    # Prometheus, Alertmanager, the poller's, receiver's and dispatcher's metrics, the node, postgres and blackbox exporters
    for port in (9090, 9093, 9311, 9312, 9314, 9100, 9187, 9115):
        with pytest.raises(OSError):
            socket.create_connection((machine.GUEST_ADDRESS, port), timeout=2).close()
    core = on_machine(provisioned, "curl -sf http://127.0.0.1/metrics")
    assert "lessonbot_http_requests_total" in core and "lessonbot_database_up 1.0" in core
    assert "lessonbot_zulip_sent_total" in on_machine(provisioned, "curl -sf http://127.0.0.1:9314/metrics")
    deadline = time.monotonic() + 60
    while True:  # Prometheus scrapes the core and every running worker
        targets = json.loads(on_machine(provisioned, "curl -sf http://127.0.0.1:9090/api/v1/targets"))
        health = {target["labels"]["job"]: target["health"] for target in targets["data"]["activeTargets"]}
        if health and all(state == "up" for state in health.values()):
            break
        assert time.monotonic() < deadline, health
        time.sleep(2)
    assert {"lessonbot_core", "lessonbot_poller", "lessonbot_receiver", "lessonbot_dispatcher", "node", "postgres",
            "certificate"} <= set(health)


def prometheus_query(environment: machine.TestEnvironment, expression: str) -> list[dict]:
    """The samples of an instant query to the machine's Prometheus."""
    answer = on_machine(environment, "curl -sfG http://127.0.0.1:9090/api/v1/query "
                                     f"--data-urlencode {shlex.quote('query=' + expression)}")
    return json.loads(answer)["data"]["result"]


def test_the_exporters_see_postgresql_the_disks_and_the_served_certificate(provisioned: machine.TestEnvironment) -> None:
    deadline = time.monotonic() + 60
    while not prometheus_query(provisioned, "pg_up == 1 and on() probe_success == 1"):
        assert time.monotonic() < deadline, (prometheus_query(provisioned, "pg_up"),
                                             prometheus_query(provisioned, "probe_success"))
        time.sleep(2)
    disks = prometheus_query(provisioned, 'node_filesystem_size_bytes{fstype!~"tmpfs|overlay"} > 0')
    assert disks, prometheus_query(provisioned, "node_filesystem_size_bytes")  # what the disk alert reads
    [expiry] = prometheus_query(provisioned, 'probe_ssl_earliest_cert_expiry{job="certificate"} - time()')
    assert float(expiry["value"][1]) > 14 * 86400  # pebble's certificate, as nginx serves it
    rules = json.loads(on_machine(provisioned, "curl -sf http://127.0.0.1:9090/api/v1/rules"))
    new_rules = {"LessonbotPostgresDown", "LessonbotGoogleAuthorizationInvalid", "LessonbotCertificateExpiring",
                 "LessonbotCertificateUnreadable", "LessonbotDiskFull"}
    assert new_rules <= {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    # The test machine has the Web client and nobody ran `google auth` (status: "not authorized yet"): that
    # alert fires, from the core's gauge; none of the others does.
    deadline = time.monotonic() + 60
    google = 'ALERTS{alertname="LessonbotGoogleAuthorizationInvalid", alertstate="firing"}'
    while not prometheus_query(provisioned, google):
        assert time.monotonic() < deadline, prometheus_query(provisioned, "lessonbot_google_authorized")
        time.sleep(2)
    firing = prometheus_query(provisioned, "ALERTS")
    assert not [alert for alert in firing
                if alert["metric"]["alertname"] in new_rules - {"LessonbotGoogleAuthorizationInvalid"}], firing


def ops_messages(environment: machine.TestEnvironment, after_id: int) -> list[dict]:
    """Stream messages in the ops stream of the Zulip test server, newer than after_id."""
    assert environment.zulip is not None
    url = f"http://127.0.0.1:{environment.zulip.port}/_test/messages?after_id={after_id}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        messages = json.loads(answer.read())
    return [message for message in messages if message["stream"] == machine.OPS_STREAM]


def wait_for_ops_message(environment: machine.TestEnvironment, after_id: int, *needles: str, timeout: float) -> dict:
    """The first ops message with a line (one alert of its group) that holds every needle."""
    deadline = time.monotonic() + timeout
    while True:
        seen = ops_messages(environment, after_id)
        found = [message for message in seen
                 if any(all(needle in line for needle in needles) for line in message["content"].splitlines())]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no ops message with {needles} within {timeout:g} s; seen: {seen}"
        time.sleep(1)


def test_a_stopped_worker_raises_an_alert_in_zulip_that_then_resolves(provisioned: machine.TestEnvironment,
                                                                      metrics: dict[str, object]) -> None:
    assert provisioned.zulip is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{provisioned.zulip.port}/_test/state", timeout=10) as answer:
        start_id = int(json.loads(answer.read())["message_count"])  # ids count up from 1
    stopped = time.monotonic()
    on_machine(provisioned, "supervisorctl stop lessonbot:receiver")
    try:
        firing = wait_for_ops_message(provisioned, start_id, "LessonbotTargetDown", "job=lessonbot_receiver",
                                      "firing since", timeout=180)
        metrics["alert_firing_seconds"] = round(time.monotonic() - stopped, 1)
    finally:
        started = time.monotonic()
        on_machine(provisioned, "supervisorctl start lessonbot:receiver")
    assert firing["topic"] == "alerts"
    # "RESOLVED" when the group has no other alert; else "FIRING n of m" with this one's line resolved.
    resolved = wait_for_ops_message(provisioned, firing["id"], "LessonbotTargetDown", "job=lessonbot_receiver",
                                    "resolved; began", timeout=180)
    metrics["alert_resolved_seconds"] = round(time.monotonic() - started, 1)
    assert resolved["topic"] == "alerts"


BACKUP_IDENTITY = Path(__file__).with_name("backup-test-key.txt")  # TEST ONLY; its public key is in inventory/test
APP_DIR = "/opt/lessonbot/current"
ENV_FILE = "/etc/lessonbot/lessonbot.env"
MANAGE = f"cd {APP_DIR} && sudo -u lessonbot LESSONBOT_ENV_FILE={ENV_FILE} .venv/bin/python manage.py"
BACKUP_DIR = "/var/lib/lessonbot/backups"
# Rows the drill must find again. Not the ops alerts: Alertmanager keeps posting about the
# workers the drill stops, before the backup and after the restore alike.
COUNTED_TABLES = {"students": "", "lesson_runs": "", "inbound_messages": "", "outbox": " WHERE kind <> 'ops_alert'"}
# The drill's Google settings live in /run only, beside the machine's own: the process environment
# wins over the env file, so the env file and the backup unit are never edited.
DRILL_DIR = "/run/lessonbot-drill"
DRILL_DROP_IN = "/run/systemd/system/lessonbot-backup.service.d/drill.conf"
STOP_APP = "supervisorctl stop 'lessonbot:*' >/dev/null; systemctl stop lessonbot-uwsgi.service lessonbot-uwsgi.socket"
START_APP = "systemctl start lessonbot-uwsgi.socket lessonbot-uwsgi.service; supervisorctl start 'lessonbot:*' >/dev/null"
# What the `authorized` fixture of tests/google does: `google auth` is a browser's consent, here
# the test server's refresh token is stored as the consent would have stored it.
STORE_AUTHORIZATION = ("from app.boot import boot; from app.db import db; from app.google.tokens import store_authorization; "
                       "import os; settings, app = boot('manage'); app.app_context().push(); "
                       "store_authorization(settings, os.environ['DRILL_ACCOUNT'], os.environ['DRILL_SCOPES'].split(','), "
                       "os.environ['DRILL_REFRESH_TOKEN']); db.session.commit()")


def _row_counts(environment: machine.TestEnvironment) -> dict[str, int]:
    query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}{where}" for t, where in COUNTED_TABLES.items())
    output = on_machine(environment, f"sudo -u postgres psql -d lessonbot -AtF' ' -c {shlex.quote(query)}")
    return {name: int(count) for name, count in (line.split() for line in output.strip().splitlines())}


def _chat(environment: machine.TestEnvironment, number: int) -> None:
    """A student message through the core's loopback endpoint, as the receiver hands it over."""
    body = json.dumps({"message_id": f"backup-{number}", "sender_email": f"b{number}@lessonbot.test",
                       "sender_full_name": f"Backup {number}", "sender_id": 90_000 + number, "content": "start git-basics"})
    on_machine(environment, "token=$(sed -n 's/^LESSONBOT_INTERNAL_TOKEN=//p' /etc/lessonbot/lessonbot.env); "
               "curl -sf -o /dev/null -H \"Authorization: Bearer $token\" -H 'Content-Type: application/json' "
               f"--data {shlex.quote(body)} http://127.0.0.1/internal/messages")


@pytest.fixture(scope="module")
def google_in_machine(provisioned: machine.TestEnvironment) -> Iterator[machine.GoogleServer]:
    """The Google test server on the machine's own loopback (its network namespace), with a Drive folder."""
    server = machine.GoogleServer(provisioned.workdir / "google", provisioned.record)
    try:
        server.start(drive_folder="lessonbot-backups")
        yield server
    finally:
        server.stop()


def drill_settings(google: machine.GoogleServer) -> dict[str, str]:
    """The app's Google and Drive settings pointed at the test server (as tests/google's settings fixture)."""
    banner = google.banner
    return {"LESSONBOT_GOOGLE_CLIENT_ID": banner["client_id"], "LESSONBOT_GOOGLE_CLIENT_SECRET": banner["client_secret"],
            "LESSONBOT_GOOGLE_API_ENDPOINT": banner["url"], "LESSONBOT_GOOGLE_TOKEN_URI": banner["token_uri"],
            "LESSONBOT_BACKUP_DRIVE_FOLDER_ID": banner["drive_folder_id"],
            # Uploads go to https://127.0.0.1:<port> (the client keeps https for media): trust its CA.
            "REQUESTS_CA_BUNDLE": f"{DRILL_DIR}/google-ca.pem", "HTTPLIB2_CA_CERTS": f"{DRILL_DIR}/google-ca.pem"}


def _put_file(environment: machine.TestEnvironment, path: str, content: str, group: str, mode: str) -> None:
    encoded = base64.b64encode(content.encode()).decode()
    on_machine(environment, f"umask 077; echo {encoded} | base64 -d > {path}; chown root:{group} {path}; chmod {mode} {path}")


def _app_python(settings: dict[str, str]) -> str:
    """The release's python as the app user, with the machine's env file and these settings over it."""
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items())
    return f"cd {APP_DIR} && sudo -u lessonbot env LESSONBOT_ENV_FILE={ENV_FILE} {assignments} .venv/bin/python"


def _start_drill(environment: machine.TestEnvironment, google: machine.GoogleServer) -> None:
    """The drill's settings in /run, read by the backup unit through a runtime drop-in."""
    settings = drill_settings(google)
    on_machine(environment, f"install -d -m 0750 -o root -g lessonbot {DRILL_DIR}; "
               f"install -d -m 0755 {Path(DRILL_DROP_IN).parent}")
    _put_file(environment, f"{DRILL_DIR}/google-ca.pem", Path(google.banner["ca_file"]).read_text(), APP_USER, "0640")
    _put_file(environment, f"{DRILL_DIR}/google.env", "".join(f"{k}={v}\n" for k, v in settings.items()), APP_USER, "0640")
    _put_file(environment, DRILL_DROP_IN, f"[Service]\nEnvironmentFile={DRILL_DIR}/google.env\n", "root", "0644")
    on_machine(environment, "systemctl daemon-reload")


def _store_authorization(environment: machine.TestEnvironment, google: machine.GoogleServer) -> None:
    banner = google.banner
    python = _app_python({**drill_settings(google), "DRILL_ACCOUNT": banner["account"],
                          "DRILL_SCOPES": ",".join(banner["scopes"]), "DRILL_REFRESH_TOKEN": banner["refresh_token"]})
    on_machine(environment, f"{python} -c {shlex.quote(STORE_AUTHORIZATION)}")


def _end_drill(environment: machine.TestEnvironment) -> None:
    """The machine as before the drill: no drill settings, no Google authorization, the app running."""
    on_machine(environment, f"rm -rf {DRILL_DIR} {Path(DRILL_DROP_IN).parent}; systemctl daemon-reload; "
               "shred -u /run/lessonbot-restore.key 2>/dev/null; "
               "sudo -u postgres psql -d lessonbot -qc 'DELETE FROM google_authorization' 2>/dev/null; " + START_APP)


def test_backup_then_drop_then_restore_finds_the_same_rows(provisioned: machine.TestEnvironment,
                                                           google_in_machine: machine.GoogleServer,
                                                           pebble_roots: Path, metrics: dict[str, object]) -> None:
    assert provisioned.machine is not None
    _start_drill(provisioned, google_in_machine)
    python = _app_python(drill_settings(google_in_machine))
    try:
        _store_authorization(provisioned, google_in_machine)
        for number in range(12):
            _chat(provisioned, number)
        before = _row_counts(provisioned)
        assert before["students"] >= 12 and before["lesson_runs"] >= 12

        started = time.monotonic()
        on_machine(provisioned, "systemctl start lessonbot-backup.service")  # what the nightly timer runs
        metrics["backup_seconds"] = round(time.monotonic() - started, 1)
        assert "lessonbot-backup.timer" in on_machine(provisioned, "systemctl list-timers --all --no-legend")
        [backup] = on_machine(provisioned, f"cd {BACKUP_DIR} && ls *.dump.age").split()
        listing = on_machine(provisioned, f"stat -c '%a %U' {BACKUP_DIR} {BACKUP_DIR}/{backup}")
        assert listing.split() == ["700", APP_USER, "600", APP_USER]
        [entry] = [e for e in json.loads(on_machine(provisioned, f"cat {BACKUP_DIR}/manifest.json")) if e["name"] == backup]
        assert entry["verified"] and entry["drive_id"], entry  # Drive confirmed its size and md5
        metrics["backup_bytes"] = entry["size"]

        key = base64.b64encode(BACKUP_IDENTITY.read_bytes()).decode()  # ops bring the private key for the restore only
        on_machine(provisioned, f"umask 077; echo {key} | base64 -d > /run/lessonbot-restore.key; "
                   "chown lessonbot /run/lessonbot-restore.key")
        # The database is lost, and the local copy with it: only Drive's copy is left.
        on_machine(provisioned, f"{STOP_APP}; sudo -u postgres dropdb lessonbot; mv {BACKUP_DIR}/{backup} {DRILL_DIR}/")
        # README, Restore drill: a fresh database for the app (schema, Google authorization: the way to
        # Drive), the backup restored into a second one, which then takes the name.
        on_machine(provisioned, "sudo -u postgres createdb -O lessonbot lessonbot; "
                   "sudo -u postgres createdb -O lessonbot lessonbot_restore")
        on_machine(provisioned, f"{python} manage.py db upgrade")
        _store_authorization(provisioned, google_in_machine)
        started = time.monotonic()
        restored = provisioned.machine.ssh(
            f"url=$(sed -n 's/^DATABASE_URL=//p' {ENV_FILE}); {python} manage.py backup restore {entry['drive_id']} "
            "--identity /run/lessonbot-restore.key --database \"${url%/*}/lessonbot_restore\"", check=False)
        metrics["restore_from_drive_seconds"] = round(time.monotonic() - started, 1)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert f"restored {backup} into lessonbot_restore at migration" in restored.stdout
        on_machine(provisioned, "sudo -u postgres dropdb lessonbot; "
                   "sudo -u postgres psql -qc 'ALTER DATABASE lessonbot_restore RENAME TO lessonbot'; "
                   f"mv {DRILL_DIR}/{backup} {BACKUP_DIR}/")
    finally:
        _end_drill(provisioned)
    assert _row_counts(provisioned) == before
    wait_healthy(pebble_roots, "the restored system")


def _zulip_user(environment: machine.TestEnvironment, index: int) -> tuple[zulip.Client, int]:
    """One of the Zulip test server's students, as the official client sees it (the server runs on the host)."""
    assert environment.zulip is not None
    credentials = json.loads((environment.zulip.workdir / "zulip.json").read_text())
    user = credentials["students"][index]
    client = zulip.Client(email=user["email"], api_key=user["api_key"], site=f"http://127.0.0.1:{environment.zulip.port}")
    return client, int(user["id"])


def _bot_replies(client: zulip.Client, after: int) -> list[str]:
    """The bot's DMs to this user with ids above `after`, oldest first, as the bot wrote them (Markdown)."""
    found = client.get_messages({"anchor": "newest", "num_before": 50, "num_after": 0, "apply_markdown": False,
                                 "narrow": [{"operator": "sender", "operand": machine.ZULIP_BOT_EMAIL},
                                            {"operator": "is", "operand": "dm"}]})  # not the ops stream's alerts
    assert found["result"] == "success", found
    return [m["content"] for m in found["messages"] if m["id"] > after]


def _ask_bot(client: zulip.Client, content: str, until: str, timeout: float = 90) -> list[str]:
    """DM the bot; the bot's replies from then on, once one of them contains `until`."""
    sent = client.send_message({"type": "private", "to": [machine.ZULIP_BOT_EMAIL], "content": content})
    assert sent["result"] == "success", sent
    deadline = time.monotonic() + timeout
    while True:
        replies = _bot_replies(client, sent["id"])
        if any(until in reply for reply in replies):
            return replies
        assert time.monotonic() < deadline, f"no reply with {until!r} to {content!r}; got {replies}"
        time.sleep(1)


def test_an_admin_runs_admin_status_from_zulip_and_a_student_cannot(provisioned: machine.TestEnvironment) -> None:
    admin, admin_id = _zulip_user(provisioned, 0)
    student, _ = _zulip_user(provisioned, 1)
    on_machine(provisioned, f"{MANAGE} admins add ops@lessonbot.test --zulip-user-id {admin_id}")

    started = {Text("admin.started", command="status").render(language) for language in LANGUAGES}
    replies = _ask_bot(admin, "admin status", "`admin status`:\n```")  # the receiver, the core, the dispatcher's job
    assert started & set(replies)
    report = next(reply for reply in replies if "```" in reply)
    assert "database" in report and "worker poller" in report

    answer = _ask_bot(student, "admin status", "admin status")  # the ordinary answer to unknown text
    assert not started & set(answer) and not any("```" in reply for reply in answer)
    recorded = on_machine(provisioned, "sudo -u postgres psql -d lessonbot -Atc "
                                       "\"SELECT admin_email, action, left(detail, 5) FROM admin_actions ORDER BY id\"")
    assert recorded.split() == ["ops@lessonbot.test|chat:", "status|done:"]


def test_env_file_is_readable_by_the_app_user_and_belongs_to_root(provisioned: machine.TestEnvironment) -> None:
    mode = on_machine(provisioned, "stat -c '%a %U %G' /etc/lessonbot/lessonbot.env").split()
    assert mode == ["640", "root", APP_USER]


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


def test_the_machine_has_ssh_host_keys_of_its_own(provisioned: machine.TestEnvironment) -> None:
    cached = machine.cached_rootfs() / "etc/ssh/ssh_host_ed25519_key.pub"
    served = on_machine(provisioned, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
    assert cached.exists() and served != cached.read_text().split()[1]


def test_ssh_takes_keys_only_and_forwards_no_x11(provisioned: machine.TestEnvironment) -> None:
    assert provisioned.machine is not None
    attempt = subprocess.run(
        ["ssh", *provisioned.machine.ssh_options(), "-o", "PubkeyAuthentication=no",
         "-o", "PreferredAuthentications=password,keyboard-interactive", f"root@{machine.GUEST_ADDRESS}", "true"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert attempt.returncode != 0 and "Permission denied (publickey)." in attempt.stderr, attempt.stderr
    effective = dict(line.split(" ", 1) for line in on_machine(provisioned, "sshd -T").splitlines() if " " in line)
    assert (effective["passwordauthentication"], effective["x11forwarding"]) == ("no", "no")


def test_unattended_upgrades_take_security_updates_only_and_restart_what_they_touch(
        provisioned: machine.TestEnvironment) -> None:
    origins = on_machine(provisioned, "apt-config dump Unattended-Upgrade::Origins-Pattern")
    patterns = re.findall(r':: "([^"]*)";', origins)
    assert patterns and all("label=Debian-Security" in pattern for pattern in patterns), origins
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in on_machine(
        provisioned, "apt-config dump Unattended-Upgrade::Automatic-Reboot")
    assert "$nrconf{restart} = 'a';" in on_machine(provisioned, "cat /etc/needrestart/conf.d/*.conf")


def test_no_mail_server_is_installed_or_listening(provisioned: machine.TestEnvironment) -> None:
    assert on_machine(provisioned, "ss -Hltn 'sport = :25'").strip() == ""
    installed = on_machine(provisioned, "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' 'exim4*' 2>/dev/null || true")
    assert " installed" not in installed, installed


def test_reloading_the_firewall_keeps_the_tables_of_other_tools(provisioned: machine.TestEnvironment) -> None:
    on_machine(provisioned, "nft add table inet othertool && nft add chain inet othertool input")
    try:
        on_machine(provisioned, "systemctl reload nftables")
        tables = on_machine(provisioned, "nft list tables").splitlines()
        assert "table inet othertool" in tables and "table inet lessonbot" in tables, tables
    finally:
        on_machine(provisioned, "nft delete table inet othertool || true")


def test_the_clock_is_kept_by_timesyncd(provisioned: machine.TestEnvironment) -> None:
    assert on_machine(provisioned, "systemctl is-enabled systemd-timesyncd").strip() == "enabled"
    # In this container the host keeps the clock and systemd leaves timesyncd off by its own rule.
    state = on_machine(provisioned, "systemctl start systemd-timesyncd; "
                                    "systemctl show -p ActiveState -p ConditionResult systemd-timesyncd")
    assert "ActiveState=active" in state or "ConditionResult=no" in state, state
    assert "ConditionVirtualization=!container" in on_machine(provisioned, "systemctl cat systemd-timesyncd")


def test_the_apps_logs_are_rotated_while_the_shipper_is_off(provisioned: machine.TestEnvironment) -> None:
    written = on_machine(provisioned, "cd /var/log/lessonbot && find . -name '*.log' -size +0 -printf '%f\\n'").split()
    assert written, on_machine(provisioned, "ls -la /var/log/lessonbot")
    on_machine(provisioned, "logrotate --force --state /run/lessonbot-logrotate.state /etc/logrotate.d/lessonbot && "
               "rm /run/lessonbot-logrotate.state")
    files = on_machine(provisioned, "ls /var/log/lessonbot").split()
    assert {f"{name}.1" for name in written} <= set(files), files
    # Each moved file is replaced by a new one the app (which reopens it) may write.
    modes = on_machine(provisioned, "cd /var/log/lessonbot && stat -c '%n %a %U' " + " ".join(written)).splitlines()
    assert modes == [f"{name} 640 {APP_USER}" for name in written], modes


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


# --- the deployment's own failure modes (issue 13, section 4) ---------------
# Each breaks the deployment the way an operator would, then checks that what
# runs stayed up and that the next run puts it right.

POSTGRESQL_CONF = "/etc/postgresql/15/main/conf.d/lessonbot.conf"
NGINX_SITE = "/etc/nginx/sites-available/lessonbot.conf"


def fingerprint(environment: machine.TestEnvironment, path: str, unit: str) -> tuple[str, str]:
    """The file's checksum and the main process of the unit that reads it."""
    checksum = on_machine(environment, f"sha256sum {path}").split()[0]
    return checksum, on_machine(environment, f"systemctl show -p MainPID --value {unit}").strip()


def test_a_bad_postgresql_setting_never_reaches_the_cluster(provisioned: machine.TestEnvironment,
                                                            pebble_roots: Path) -> None:
    unit = "postgresql@15-main"
    before = fingerprint(provisioned, POSTGRESQL_CONF, unit)
    result = provisioned.ansible_playbook(
        "site.yml", "-e", "postgresql_max_connections=bogus",
        "--start-at-task", "Configure the server for local connections, UTC and read committed")
    assert result.returncode != 0, tail(result)
    assert "invalid value for parameter" in result.stdout and "max_connections" in result.stdout, tail(result)
    assert fingerprint(provisioned, POSTGRESQL_CONF, unit) == before  # neither written nor restarted
    on_machine(provisioned, f"systemctl restart {unit}")  # as the next reboot would
    wait_healthy(pebble_roots, "PostgreSQL restarted after a refused setting")


@pytest.fixture(scope="module")
def site_run_with_a_stopped_worker_and_a_bad_nginx_setting(provisioned: machine.TestEnvironment) -> dict:
    """A worker stopped by hand, then site.yml from the supervisor role on, with a rate nginx refuses."""
    before = fingerprint(provisioned, NGINX_SITE, "nginx")
    on_machine(provisioned, "supervisorctl stop lessonbot:poller")
    result = provisioned.ansible_playbook(
        "site.yml", "-e", "nginx_limit_req_rate=bogus", "--start-at-task", "List the worker modules of the current release")
    return {"before": before, "result": result}


def test_a_site_run_starts_a_stopped_worker(provisioned: machine.TestEnvironment,
                                            site_run_with_a_stopped_worker_and_a_bad_nginx_setting: dict) -> None:
    result = site_run_with_a_stopped_worker_and_a_bad_nginx_setting["result"]
    assert "supervisor : Start the workers that are not running" in changed_tasks(result.stdout), tail(result)
    test_every_supervisor_worker_is_running(provisioned)


def test_a_bad_nginx_setting_never_reaches_the_site(provisioned: machine.TestEnvironment, pebble_roots: Path,
                                                    site_run_with_a_stopped_worker_and_a_bad_nginx_setting: dict) -> None:
    result = site_run_with_a_stopped_worker_and_a_bad_nginx_setting["result"]
    assert result.returncode != 0, tail(result)
    assert "invalid rate" in result.stdout, tail(result)
    assert fingerprint(provisioned, NGINX_SITE, "nginx") == site_run_with_a_stopped_worker_and_a_bad_nginx_setting["before"]
    on_machine(provisioned, "systemctl restart nginx")  # as the next reboot or renewal would
    wait_healthy(pebble_roots, "nginx restarted after a refused setting")


def app_processes(environment: machine.TestEnvironment, path: str) -> list[tuple[str, bool]]:
    """uWSGI's workers and the supervisor workers: (command line, whether it started after `path` last changed)."""
    report = on_machine(environment, f"""
        changed=$(stat -c %Y {path}); now=$(date +%s)
        master=$(systemctl show -p MainPID --value lessonbot-uwsgi)
        for pid in $(pgrep -P "$master" -x uwsgi) $(pgrep -f -- '-m app[.]workers[.]'); do
            elapsed=$(ps -o etimes= -p "$pid") && args=$(ps -o args= -p "$pid") || continue
            echo "$((now - elapsed)) $changed $args"
        done; true""")
    processes = [line.split(" ", 2) for line in report.strip().splitlines()]
    return [(args, int(started) >= int(changed)) for started, changed, args in processes]


def on_new_settings(processes: list[tuple[str, bool]]) -> bool:
    kinds = {("uwsgi" if "uwsgi" in args else "worker") for args, _ in processes}
    return kinds == {"uwsgi", "worker"} and all(after for _, after in processes)


def test_an_interrupted_site_run_leaves_its_restarts_to_the_next_run(provisioned: machine.TestEnvironment,
                                                                     pebble_roots: Path) -> None:
    # The processes run with settings that differ from the inventory's (as after an edit by hand).
    on_machine(provisioned, f"echo '# edited by hand (deploy test)' >> {ENV_FILE}; "
               "systemctl reload lessonbot-uwsgi; supervisorctl restart 'lessonbot:*' >/dev/null")
    output = provisioned.ansible_playbook_interrupted("site.yml", "TASK [app : Deploy the release]")
    assert "edited by hand" not in on_machine(provisioned, f"cat {ENV_FILE}"), output[-3000:]
    assert not on_new_settings(app_processes(provisioned, ENV_FILE)), "the interrupted run restarted the processes"

    result = provisioned.ansible_playbook("site.yml")
    assert result.returncode == 0, tail(result)
    deadline = time.monotonic() + 30
    while not on_new_settings(processes := app_processes(provisioned, ENV_FILE)):
        assert time.monotonic() < deadline, f"still on the settings from before the run: {processes}"
        time.sleep(1)
    wait_healthy(pebble_roots, "the run after the interrupted one")


def test_second_site_run_changes_nothing(provisioned: machine.TestEnvironment, metrics: dict[str, object]) -> None:
    started = time.monotonic()
    result = provisioned.ansible_playbook("site.yml")
    seconds = time.monotonic() - started
    metrics["site_second_run_seconds"] = against_target(seconds, SECOND_RUN_SECONDS)
    metrics["site_second_run_recap"] = recap(result.stdout)
    print(recap(result.stdout))
    assert result.returncode == 0, tail(result)
    assert changed_count(result.stdout) == 0, changed_tasks(result.stdout)


LIVE_RELEASES = "/opt/lessonbot/live-releases"
RESTART_PENDING = "/var/lib/lessonbot-deploy/restart-pending"


@pytest.fixture(scope="module")
def broken_snapshot(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release snapshot with a migration environment that fails, as a bad migration would."""
    target = tmp_path_factory.mktemp("broken-release-source") / "source"
    shutil.copytree(snapshot, target, symlinks=True)
    with (target / "migrations/env.py").open("a") as env:
        env.write('\nraise RuntimeError("a migration that fails (deploy test)")\n')
    return target


def releases_on_machine(environment: machine.TestEnvironment) -> list[str]:
    return on_machine(environment, "ls /opt/lessonbot/releases").split()


def test_a_deploy_that_fails_at_its_migration_leaves_no_release_behind(
    provisioned: machine.TestEnvironment, pebble_roots: Path, broken_snapshot: Path
) -> None:
    running, releases = current_release(provisioned), releases_on_machine(provisioned)
    # The deploy also brings back a settings file that was edited by hand (and loaded).
    on_machine(provisioned, f"echo '# edited by hand (deploy test)' >> {ENV_FILE}; "
               "systemctl reload lessonbot-uwsgi; supervisorctl restart 'lessonbot:*' >/dev/null")
    result = provisioned.ansible_playbook("deploy.yml", env={"LESSONBOT_TEST_RELEASE_SOURCE": str(broken_snapshot)})
    assert result.returncode != 0, tail(result)
    assert "a migration that fails (deploy test)" in result.stdout, tail(result)
    assert current_release(provisioned) == running
    # Nothing restarted half-way (uWSGI on the new settings, the workers on the old):
    # both restarts are left to the next run.
    time.sleep(3)
    assert {after for _, after in app_processes(provisioned, ENV_FILE)} == {False}
    assert on_machine(provisioned, f"ls {RESTART_PENDING}").split() == ["uwsgi", "workers"]
    assert releases_on_machine(provisioned) == releases  # the failed one is removed
    assert on_machine(provisioned, f"cat {LIVE_RELEASES}").split()[-1] == Path(running).name
    wait_healthy(pebble_roots, "after a failed deploy")


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
    # The restarts that the failed deploy before it left pending are done, and forgotten.
    assert on_new_settings(app_processes(provisioned, ENV_FILE))
    assert on_machine(provisioned, f"ls {RESTART_PENDING}").split() == []


def test_rollback_serves_the_previous_release(provisioned: machine.TestEnvironment, pebble_roots: Path) -> None:
    # The release that ran before the deploy, not the failed one between them (whose name sorts closer).
    previous = RELEASES.get("before_deploy")
    assert previous, "needs the deploy test before it"
    deployed, live = current_release(provisioned), on_machine(provisioned, f"cat {LIVE_RELEASES} || true").split()
    result = provisioned.ansible_playbook("rollback.yml")
    assert result.returncode == 0, tail(result)
    assert current_release(provisioned) == previous
    assert live[-2:] == [Path(previous).name, Path(deployed).name], live
    assert on_machine(provisioned, f"cat {LIVE_RELEASES}").split() == live[:-1]  # a second rollback goes further back
    deadline = time.monotonic() + 30
    while uwsgi_worker_dirs(provisioned) != {previous}:
        assert time.monotonic() < deadline, uwsgi_worker_dirs(provisioned)
        time.sleep(1)
    response = https_get("/health", pebble_roots)
    assert response.status == 200 and response.json()["status"] == "ok"
    test_every_supervisor_worker_is_running(provisioned)


# --- attacks from outside the deployed machine (issue 9) --------------------
# Each performs the attack the security review made, the way it would be made:
# over HTTPS from the network, or over SSH as a local user of the machine.

ATTACKER = "mallory"
UWSGI_SOCKET = "/run/lessonbot/uwsgi.sock"
# Half-sent pushes before a clone (production runs 4 git-http-backend slots),
# and how long that clone may then take.
HALF_SENT_PUSHES = 6
CLONE_AFTER_HALF_SENT_PUSHES_SECONDS = 15

# Sent to the uWSGI socket: a raw uwsgi packet asking uWSGI to load an "app"
# from UWSGI_FILE=exec://<command>, which runs the command (as the app user)
# unless uWSGI refuses to load a second app. Prints what happened as JSON.
UWSGI_EXEC_ATTACK = r"""
import json, socket, struct, sys

def packet(variables):
    body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in ((k.encode(), v.encode()) for k, v in variables.items()))
    return struct.pack("<BHB", 0, len(body), 0) + body

variables = {
    "REQUEST_METHOD": "GET", "REQUEST_URI": "/health", "PATH_INFO": "/health", "QUERY_STRING": "",
    "SERVER_NAME": "lessonbot.test", "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1",
    "SCRIPT_NAME": "/attack", "UWSGI_APPID": "attack", "UWSGI_FILE": "exec://" + sys.argv[2],
}
try:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(20)
        connection.connect(sys.argv[1])
        connection.sendall(packet(variables))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    print(json.dumps({"connected": True, "answer": answer[:300].decode("latin-1")}))
except OSError as error:
    print(json.dumps({"connected": False, "error": f"{type(error).__name__}: {error}"}))
"""


def ssh_as(environment: machine.TestEnvironment, user: str, command: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run a shell command on the machine over SSH as `user`, feeding it stdin."""
    assert environment.machine is not None
    return subprocess.run(
        ["ssh", *environment.machine.ssh_options(), f"{user}@{machine.GUEST_ADDRESS}", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def attacker(provisioned: machine.TestEnvironment) -> str:
    """An unprivileged local account (no group of the app's or nginx's) that logs in over SSH."""
    on_machine(
        provisioned,
        f"id {ATTACKER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {ATTACKER}; "
        f"install -d -m 700 -o {ATTACKER} -g {ATTACKER} /home/{ATTACKER}/.ssh && "
        f"install -m 600 -o {ATTACKER} -g {ATTACKER} /root/.ssh/authorized_keys /home/{ATTACKER}/.ssh/",
    )
    assert ssh_as(provisioned, ATTACKER, "id -un").stdout.strip() == ATTACKER
    return ATTACKER


def as_local_user(environment: machine.TestEnvironment, attacker: str, who: str, command: str, stdin: str = "") -> str:
    """Run `command` on the machine as `who`: the attacker logs in over SSH; system
    users without a login shell (the app's, nginx's) are entered with runuser."""
    if who == attacker:
        result = ssh_as(environment, attacker, command, stdin)
    else:
        result = ssh_as(environment, "root", f"runuser -u {who} -- sh -c {shlex.quote(command)}", stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_uwsgi_socket_belongs_to_nginx_alone_and_no_tcp_port_speaks_uwsgi(provisioned: machine.TestEnvironment) -> None:
    assert on_machine(provisioned, f"stat -c '%a %U %G' {UWSGI_SOCKET}").split() == ["600", "www-data", "www-data"]
    # uWSGI listens on nothing itself, not even on loopback, where any local user could reach it.
    listeners = on_machine(provisioned, "ss -Hltnup").splitlines()
    assert [line for line in listeners if "uwsgi" in line] == []
    assert "www-data" not in on_machine(provisioned, "id -Gn lessonbot").split()


@pytest.mark.parametrize("who", ["attacker", APP_USER, "www-data"])
def test_uwsgi_magic_variables_run_no_command(provisioned: machine.TestEnvironment, attacker: str, who: str) -> None:
    user = attacker if who == "attacker" else who
    marker = f"/var/lib/lessonbot/uwsgi-exec-by-{user}"
    on_machine(provisioned, f"rm -f {marker}")
    output = as_local_user(
        provisioned,
        attacker,
        user,
        f"python3 - {UWSGI_SOCKET} {shlex.quote(f'touch {marker}')}",
        stdin=UWSGI_EXEC_ATTACK,
    )
    outcome = json.loads(output.strip().splitlines()[-1])
    time.sleep(1)
    executed = provisioned.machine.ssh(f"test -e {marker}", check=False).returncode == 0
    assert not executed, f"{user} ran a command through the uWSGI socket: {outcome}"
    if user == "www-data":
        # nginx's user may connect (that is how requests arrive): uWSGI answers with
        # the one app it has and loads nothing else.
        assert outcome["connected"] and outcome["answer"].startswith("HTTP/1.1 200"), outcome
        assert "cannot load more than 1 apps" in on_machine(provisioned, "journalctl -u lessonbot-uwsgi --since=-2min")
    else:
        assert not outcome["connected"] and "PermissionError" in outcome["error"], outcome


# What the app user must not be able to change (its code, its virtualenv, its
# settings, how it is started) and what it must be able to write (its data).
APP_READ_ONLY = ("/opt/lessonbot", "/etc/lessonbot", "/etc/supervisor", "/etc/systemd/system", "/etc/nginx")
APP_WRITABLE = ("/var/lib/lessonbot", "/var/lib/lessonbot/git", "/var/log/lessonbot")
APP_WRITE_ATTEMPTS = r"""
import json, os, sys
attempts = {}
def attempt(name, action):
    try:
        action()
        attempts[name] = "written"
    except OSError as error:
        attempts[name] = type(error).__name__
release = os.path.realpath("/opt/lessonbot/current")
venv = os.path.realpath("/opt/lessonbot/current/.venv")
attempt("env file", lambda: open("/etc/lessonbot/lessonbot.env", "a").close())
attempt("new settings file", lambda: open("/etc/lessonbot/extra.env", "x").close())
attempt("release code", lambda: open(release + "/app/__init__.py", "a").close())
attempt("new module in the release", lambda: open(release + "/app/planted.py", "x").close())
attempt("virtualenv python", lambda: open(venv + "/bin/python3", "a").close())
attempt("virtualenv site-packages", lambda: open(venv + "/lib/python3.11/site-packages/planted.pth", "x").close())
attempt("current link", lambda: os.symlink("/tmp", "/opt/lessonbot/planted"))
attempt("uwsgi config", lambda: open("/etc/lessonbot/uwsgi.ini", "a").close())
attempt("read env file", lambda: open("/etc/lessonbot/lessonbot.env").read(1))
print(json.dumps(attempts))
"""


def test_app_user_cannot_change_its_code_virtualenv_or_settings(provisioned: machine.TestEnvironment, attacker: str) -> None:
    # git-http-backend (fcgiwrap) and the hooks run as the app user too.
    assert on_machine(provisioned, "ps -o user:32= -C fcgiwrap | sort -u").split() in ([], [APP_USER])
    attempts = json.loads(as_local_user(provisioned, attacker, APP_USER, "python3 -", stdin=APP_WRITE_ATTEMPTS))
    written = {name for name, outcome in attempts.items() if outcome == "written"}
    assert written == {"read env file"}, attempts
    find_writable = f"find {' '.join(APP_READ_ONLY)} ! -type l -writable 2>/dev/null || true"
    writable = as_local_user(provisioned, attacker, APP_USER, find_writable)
    assert writable.split() == []
    for directory in APP_WRITABLE:
        as_local_user(provisioned, attacker, APP_USER, f"test -w {directory}")


def https_request(
    method: str, path: str, cafile: Path, headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 30
) -> Response:
    """A raw HTTPS request: the path goes out exactly as written (no client-side normalising)."""
    context = ssl.create_default_context(cafile=str(cafile))
    connection = http.client.HTTPSConnection(machine.GUEST_ADDRESS, 443, context=context, timeout=timeout)
    connection.sock = context.wrap_socket(
        socket.create_connection((machine.GUEST_ADDRESS, 443), timeout=timeout), server_hostname=machine.DOMAIN
    )
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": machine.DOMAIN, "Connection": "close", **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def basic_auth(repo: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{repo['user']}:{repo['password']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def push_a_commit(repo: dict[str, str], work: Path, cafile: Path, name: str, text: str) -> str:
    """Clone `repo` with its own credentials into `work`, commit one file, push; the commit id."""
    url = repo["url"].replace("https://", f"https://{repo['user']}:{repo['password']}@")
    assert host_git("clone", url, str(work), cwd=work.parent, cafile=cafile).returncode == 0
    (work / name).write_text(text)
    for args in (("add", name), ("commit", "-m", f"Add {name}"), ("push", "origin", "HEAD:main")):
        result = host_git(*args, cwd=work, cafile=cafile)
        assert result.returncode == 0, result.stderr
    return host_git("rev-parse", "HEAD", cwd=work, cafile=cafile).stdout.strip()


@pytest.fixture(scope="module")
def two_students(provisioned: machine.TestEnvironment, pebble_roots: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Student A's and student B's repositories; B's holds a commit only B may see."""
    repo_a = hosted_repo(provisioned, "student-a@lessonbot.test")
    repo_b = hosted_repo(provisioned, "student-b@lessonbot.test")
    work = tmp_path_factory.mktemp("students")
    push_a_commit(repo_a, work / "a", pebble_roots, "README.md", "student A's work\n")
    secret = push_a_commit(repo_b, work / "b", pebble_roots, "secret.txt", "only student B may read this\n")
    return {"a": repo_a, "b": repo_b, "b_secret_commit": secret}


@pytest.mark.parametrize("traversal", sorted(attacks.TRAVERSALS))
def test_git_path_traversal_to_another_students_repository_is_refused(
    provisioned: machine.TestEnvironment, pebble_roots: Path, two_students: dict, traversal: str
) -> None:
    repo_a, repo_b = two_students["a"], two_students["b"]
    relative = attacks.TRAVERSALS[traversal].format(a=repo_a["name"], b=repo_b["name"])
    # Raw requests, as an attacker sends them: `/../` would otherwise be folded by the client.
    for service in ("git-upload-pack", "git-receive-pack"):
        path = f"/git/{relative}/info/refs?service={service}"
        response = https_request("GET", path, pebble_roots, headers=basic_auth(repo_a))
        assert response.status in (400, 401, 403, 404), (path, response.status)
        assert two_students["b_secret_commit"].encode() not in response.body


@pytest.mark.parametrize("dots", ["%2e%2e", "%2E%2E"])
def test_git_clone_and_push_through_a_traversal_url_reach_nothing(
    provisioned: machine.TestEnvironment, pebble_roots: Path, two_students: dict, dots: str, tmp_path: Path
) -> None:
    repo_a, repo_b = two_students["a"], two_students["b"]
    credentials_a = f"https://{repo_a['user']}:{repo_a['password']}@"
    traversal = repo_a["url"].replace("https://", credentials_a) + f"/{dots}/{repo_b['name']}.git"
    cloned = host_git("clone", traversal, "stolen", cwd=tmp_path, cafile=pebble_roots)
    assert cloned.returncode != 0, "student A cloned student B's repository"
    local = tmp_path / "attack"
    local.mkdir()
    host_git("init", "-q", cwd=local, cafile=pebble_roots)
    (local / "planted.txt").write_text("planted by student A\n")
    host_git("add", "planted.txt", cwd=local, cafile=pebble_roots)
    host_git("commit", "-m", "planted", cwd=local, cafile=pebble_roots)
    pushed = host_git("push", traversal, "HEAD:refs/heads/planted", cwd=local, cafile=pebble_roots)
    assert pushed.returncode != 0, "student A pushed into student B's repository"
    git_dir = f"/var/lib/lessonbot/git/{repo_b['name']}.git"
    refs = on_machine(provisioned, f"git --git-dir={git_dir} for-each-ref --format='%(refname)'")
    assert "refs/heads/planted" not in refs.split()


def half_send_pushes(repo: dict[str, str], cafile: Path, count: int) -> None:
    """`count` authenticated receive-pack POSTs at once, each promising 100000 bytes and
    sending four; held open until the server has started on them, then all dropped."""
    context = ssl.create_default_context(cafile=str(cafile))
    head = (
        f"POST /git/{repo['name']}.git/git-receive-pack HTTP/1.1\r\n"
        f"Host: {machine.DOMAIN}\r\n"
        f"Authorization: {basic_auth(repo)['Authorization']}\r\n"
        "Content-Type: application/x-git-receive-pack-request\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    connections = []
    try:
        for _ in range(count):
            raw = socket.create_connection((machine.GUEST_ADDRESS, 443), timeout=10)
            connections.append(context.wrap_socket(raw, server_hostname=machine.DOMAIN))
            connections[-1].sendall(head + b"0000")
        time.sleep(0.5)
    finally:
        for connection in connections:
            connection.close()


def test_half_sent_pushes_do_not_stop_anyone_cloning(
    provisioned: machine.TestEnvironment, pebble_roots: Path, two_students: dict, metrics: dict[str, object], tmp_path: Path
) -> None:
    repo_a, repo_b = two_students["a"], two_students["b"]
    half_send_pushes(repo_a, pebble_roots, HALF_SENT_PUSHES)
    time.sleep(1)
    url_b = repo_b["url"].replace("https://", f"https://{repo_b['user']}:{repo_b['password']}@")
    started = time.monotonic()
    try:
        cloned = host_git("clone", url_b, "b", cwd=tmp_path, cafile=pebble_roots, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a clone after {HALF_SENT_PUSHES} half-sent pushes did not finish in 60 s")
    seconds = time.monotonic() - started
    metrics["clone_after_half_sent_pushes_seconds"] = round(seconds, 1)
    assert cloned.returncode == 0, cloned.stderr
    assert seconds <= CLONE_AFTER_HALF_SENT_PUSHES_SECONDS
    # And nothing is left spinning on the abandoned pushes.
    deadline = time.monotonic() + 15
    while left := on_machine(provisioned, "ps -o pid=,time=,args= -C git-http-backend || true").strip():
        assert time.monotonic() < deadline, f"git-http-backend still running:\n{left}"
        time.sleep(1)


# Last: it leaves the test's own address at the firewall's limit for a while.
SSH_BURST = 150  # common_ssh_new_connections_burst in inventory/test (its rate: 5 a second)
SSH_FLOOD_ATTEMPTS = 3 * SSH_BURST
SSH_FLOOD_PAUSE = 0.04  # 25 connections a second: far below what sshd takes, far above the limit


def test_new_ssh_connections_are_limited_per_address(provisioned: machine.TestEnvironment) -> None:
    accepted = 0
    while accepted < SSH_FLOOD_ATTEMPTS:
        try:
            # Under a second: a dropped SYN would be sent again after one.
            socket.create_connection((machine.GUEST_ADDRESS, 22), timeout=0.9).close()
        except TimeoutError:  # the firewall dropped the SYN
            break
        accepted += 1
        time.sleep(SSH_FLOOD_PAUSE)
    # Not refused outright (a burst gets through), but refused well before the flood ends.
    assert SSH_BURST // 2 <= accepted < SSH_FLOOD_ATTEMPTS, accepted
