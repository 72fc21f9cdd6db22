"""The supervisor role's programs, rendered from the role and run by a real supervisord.

Several dispatcher processes (``supervisor_dispatcher_processes``) each serve their own
metrics on the program's port plus their index, and Prometheus is told to scrape each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from app.settings import PROJECT_ROOT
from tests import lifetime
from tests.conftest import SECRETS
from tests.pg import free_port

ROLES = PROJECT_ROOT / "roles"
CONF = "templates/etc/supervisor/conf.d/lessonbot.conf.j2"


def _render(role: str, template: str, variables: dict[str, Any], strict: bool = True,
            then: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values) -> str:
    """A role's template with its defaults (they refer to each other) overridden by `variables`.

    Not `strict`: what only Ansible knows (facts, other roles' settings) renders empty.
    `then` adds what the role's tasks would compute from the settings.
    """
    undefined = jinja2.StrictUndefined if strict else jinja2.ChainableUndefined
    environment = jinja2.Environment(undefined=undefined, keep_trailing_newline=True)
    environment.filters["bool"] = lambda value: str(value).lower() in {"true", "yes", "on", "1"}  # Ansible's
    values = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text()) | variables
    for _ in range(3):
        values = {name: _resolve(environment, value, values) for name, value in values.items()}
    return environment.from_string((ROLES / role / template).read_text()).render(then(values))


def _resolve(environment: jinja2.Environment, value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return environment.from_string(value).render(values)
    if isinstance(value, list):
        return [_resolve(environment, item, values) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(environment, item, values) for key, item in value.items()}
    return value


def _programs(processes: int, tmp_path: Path) -> str:
    def only_the_dispatcher(values: dict[str, Any]) -> dict[str, Any]:
        """What the role's tasks enable, here only the dispatcher (the others need Zulip and more)."""
        return values | {"supervisor_enabled_programs": [program for program in values["supervisor_programs"]
                                                         if program["name"] == "dispatcher"]}

    return _render("supervisor", CONF, {
        "ansible_managed": "rendered by the test", "supervisor_dispatcher_processes": processes,
        "supervisor_app_dir": str(PROJECT_ROOT), "supervisor_user": _user(), "supervisor_env_file": str(tmp_path / "env"),
        "supervisor_log_dir": str(tmp_path), "supervisor_log_shipper_enabled": False}, then=only_the_dispatcher)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _two_free_ports() -> int:
    for _ in range(50):
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port
    raise RuntimeError("no two free ports in a row")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


@pytest.fixture
def supervisord(database_url: str, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """supervisord running the role's dispatcher program with two processes; (its socket, the metrics port)."""
    port = _two_free_ports()
    (tmp_path / "env").write_text("")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lessonbot.conf").write_text(_programs(2, tmp_path))
    socket_path = tmp_path / "supervisor.sock"
    (tmp_path / "supervisord.conf").write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"[unix_http_server]\nfile={socket_path}\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{socket_path}\n"
        f"[include]\nfiles = {tmp_path}/conf.d/*.conf\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    env.update(DATABASE_URL=database_url, LESSONBOT_METRICS_PORT_DISPATCHER=str(port),
               LESSONBOT_LOG_DIR=str(tmp_path), LESSONBOT_GIT_ROOT=str(tmp_path / "git"))
    process = lifetime.popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(tmp_path / "supervisord.conf")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield tmp_path / "supervisord.conf", port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_two_dispatcher_processes_each_serve_their_own_metrics(supervisord: tuple[Path, int]) -> None:
    conf, port = supervisord
    deadline = time.monotonic() + 60
    answers: list[str | None] = [None, None]
    while time.monotonic() < deadline and not all(answers):
        answers = [_metrics(port), _metrics(port + 1)]
        time.sleep(0.2)
    assert all(answers), f"metrics on {port} and {port + 1}: {[bool(answer) for answer in answers]}"
    assert all("lessonbot_zulip_sent" in str(answer) for answer in answers)
    status = ""
    while time.monotonic() < deadline + 30 and status.count("RUNNING") < 2:  # past startsecs
        status = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf), "status"],
                                capture_output=True, text=True, timeout=30).stdout
        time.sleep(0.5)
    assert "lessonbot:dispatcher_00" in status and "lessonbot:dispatcher_01" in status
    assert status.count("RUNNING") == 2, status


def test_prometheus_scrapes_every_dispatcher_process() -> None:
    rendered = _render("monitoring", "templates/etc/prometheus/prometheus.yml.j2", {
        "ansible_managed": "rendered by the test", "supervisor_dispatcher_processes": 3, "nginx_http_port": 80}, strict=False)
    jobs = {job["job_name"]: job for job in yaml.safe_load(rendered)["scrape_configs"]}
    assert jobs["lessonbot_dispatcher"]["static_configs"][0]["targets"] == [
        "127.0.0.1:9314", "127.0.0.1:9315", "127.0.0.1:9316"]
    assert jobs["lessonbot_poller"]["static_configs"][0]["targets"] == ["127.0.0.1:9311"]
