"""Fixtures for the Zulip path: the Zulip test server, the bot, and the core configured for both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from pydantic import SecretStr

from app.settings import PROJECT_ROOT, Settings
from tests import lifetime
from tests.conftest import SECRETS
from tests.zulip_server.contract import ContractChecker
from tests.zulip_server.models import User
from tests.zulip_server.server import ZulipTestServer

# The test server has no rate limit unless a test sets one; the bot's own budget should not be the brake.
NO_LIMIT = 60_000.0


@pytest.fixture(scope="session")
def contract() -> ContractChecker:
    return ContractChecker()


@pytest.fixture
def zs(contract: ContractChecker) -> Iterator[ZulipTestServer]:
    """A Zulip test server; every exchange with it is checked against Zulip's OpenAPI description."""
    already = len(contract.violations)
    with ZulipTestServer(heartbeat_seconds=1.0) as server:
        server.add_observer(contract)
        yield server
    new = contract.violations[already:]
    assert not new, "Zulip API contract violations:\n" + "\n".join(map(str, new))


@pytest.fixture
def bot(zs: ZulipTestServer) -> User:
    return zs.add_user("lessonbot-bot@example.com", "Lessonbot", bot=True)


@pytest.fixture
def zulip_app(app: Flask, zs: ZulipTestServer, bot: User, live_server: str) -> Flask:
    """The app (served on live_server) with the bot's Zulip settings."""
    settings: Settings = app.extensions["lessonbot.settings"]
    app.extensions["lessonbot.settings"] = settings.model_copy(update={
        "zulip_site": zs.url, "zulip_email": bot.email, "zulip_api_key": SecretStr(bot.api_key), "core_url": live_server,
        "poll_interval_seconds": 0.5, "zulip_rate_per_minute": NO_LIMIT,
    })
    return app


def worker_env(app: Flask, database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment a worker process gets: the same settings as the app under test."""
    settings: Settings = app.extensions["lessonbot.settings"]
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONBOT_")}
    env.update({f"LESSONBOT_{key.upper()}": value for key, value in SECRETS.items()})
    assert settings.zulip_api_key is not None
    env.update(DATABASE_URL=database_url, LESSONBOT_ENV_FILE=str(empty), LESSONBOT_GIT_ROOT=str(settings.git_root),
               LESSONBOT_ZULIP_SITE=str(settings.zulip_site), LESSONBOT_ZULIP_EMAIL=str(settings.zulip_email),
               LESSONBOT_ZULIP_API_KEY=settings.zulip_api_key.get_secret_value(), LESSONBOT_CORE_URL=settings.core_url,
               LESSONBOT_POLL_INTERVAL_SECONDS="0.5", LESSONBOT_DEFAULT_LANGUAGE="en",
               LESSONBOT_ZULIP_RATE_PER_MINUTE=str(settings.zulip_rate_per_minute))
    # No metrics ports unless a test asks: tests running side by side would fight over the fixed defaults.
    env.update(LESSONBOT_METRICS_PORT_POLLER="0", LESSONBOT_METRICS_PORT_RECEIVER="0", LESSONBOT_METRICS_PORT_LOG_SHIPPER="0")
    return env


class Workers:
    """Worker processes started by a test, always stopped at its end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, module: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        process = lifetime.popen([sys.executable, "-m", module], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=log)
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> int:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(zulip_app: Flask, database_url: str, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(worker_env(zulip_app, database_url, tmp_path), tmp_path)
    yield running
    running.stop_all()
    # pytest shows this only when the test failed: the workers' own account of what went wrong.
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name} (last 60 lines) ---", *log.read_text(errors="replace").splitlines()[-60:], sep="\n")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
