"""The uWSGI configuration the deployment renders (roles/uwsgi), run by the real uWSGI.

Whoever can write a uwsgi packet to the socket can name an app for uWSGI to load
on the spot (UWSGI_FILE, UWSGI_SCRIPT, UWSGI_MODULE), and UWSGI_FILE=exec://…
runs a shell command. The deployed configuration allows one app per worker, so
every such packet gets the core's answer and loads nothing. (Who may write to
the socket at all is checked on the deployed machine: tests/deploy.)
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLE = REPO_ROOT / "roles/uwsgi"

VICTIM_APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the core"]
'''
# A module the attacker names in UWSGI_SCRIPT / UWSGI_MODULE; importing it is the harm.
PLANTED_MODULE = '''
from pathlib import Path
Path(__file__).with_name("MARKER").touch()
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"planted"]
'''


def rendered_config(directory: Path) -> str:
    """roles/uwsgi's uwsgi.ini, with the role's defaults and paths inside `directory`."""
    variables = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables |= {
        "ansible_managed": "rendered by the test",
        "uwsgi_app_dir": str(directory / "current"),
        "uwsgi_module": "victim:app",
        "uwsgi_env_file": str(directory / "lessonbot.env"),
        "uwsgi_runtime_dir": str(directory),
        "uwsgi_metrics_dir": str(directory / "metrics"),
        "uwsgi_processes": 1,
        "uwsgi_listen_backlog": 64,
    }
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # Defaults refer to each other ("{{ uwsgi_runtime_dir }}/uwsgi.sock").
    for _ in range(3):
        variables = {
            name: environment.from_string(value).render(variables) if isinstance(value, str) else value
            for name, value in variables.items()
        }
    return environment.from_string((ROLE / "templates/etc/lessonbot/uwsgi.ini.j2").read_text()).render(variables)


@pytest.fixture
def uwsgi(tmp_path: Path) -> Iterator[Path]:
    """The real uWSGI with the deployed configuration; yields the app directory."""
    app_dir = tmp_path / "current"
    app_dir.mkdir()
    (app_dir / ".venv").symlink_to(sys.prefix)
    (app_dir / "victim.py").write_text(VICTIM_APP)
    (app_dir / "planted.py").write_text(PLANTED_MODULE)
    config = tmp_path / "uwsgi.ini"
    config.write_text(rendered_config(tmp_path))
    log = (tmp_path / "uwsgi.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "uwsgi"), "--ini", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while "WSGI app 0" not in (tmp_path / "uwsgi.log").read_text():
            assert process.poll() is None, (tmp_path / "uwsgi.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "uwsgi.log").read_text()
            time.sleep(0.1)
        yield app_dir
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def uwsgi_request(path: Path, variables: dict[str, str]) -> bytes:
    """One raw uwsgi packet (modifier 0: WSGI) and the whole answer."""
    body = b"".join(
        struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value
        for key, value in ((k.encode(), v.encode()) for k, v in variables.items())
    )
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(20)
        connection.connect(str(path))
        connection.sendall(struct.pack("<BHB", 0, len(body), 0) + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("UWSGI_FILE", "exec://touch {marker}"),
        ("UWSGI_FILE", "{app_dir}/planted.py"),
        ("UWSGI_SCRIPT", "planted"),
        ("UWSGI_MODULE", "planted"),
    ],
)
def test_a_packet_naming_another_app_loads_nothing(uwsgi: Path, variable: str, value: str) -> None:
    marker = uwsgi / "MARKER"
    request = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/health",
        "PATH_INFO": "/health",
        "QUERY_STRING": "",
        "SERVER_NAME": "lessonbot.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        # Any mount point but the core's makes uWSGI look for another app.
        "SCRIPT_NAME": "/attack",
        "UWSGI_APPID": "attack",
        variable: value.format(marker=marker, app_dir=uwsgi),
    }
    answer = uwsgi_request(uwsgi.parent / "uwsgi.sock", request)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"the core")
    assert not marker.exists(), f"{variable}={value} ran code in the worker"
