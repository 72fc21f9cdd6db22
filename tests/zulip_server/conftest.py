"""Fixtures for the Zulip test server's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract import ContractChecker
from .models import User
from .server import ZulipTestServer


@pytest.fixture(scope="session")
def contract() -> ContractChecker:
    """One OpenAPI checker for the session (parsing the description takes ~0.5 s)."""
    return ContractChecker()


@pytest.fixture
def zs(contract: ContractChecker) -> Iterator[ZulipTestServer]:
    """A running server whose every exchange is checked against the OpenAPI file."""
    already = len(contract.violations)
    server = ZulipTestServer(heartbeat_seconds=2.0)
    with server:
        server.add_observer(contract)
        yield server
    assert server.api is not None and not server.api.observer_errors
    new = contract.violations[already:]
    assert not new, "contract violations:\n" + "\n".join(map(str, new))


@pytest.fixture
def bot(zs: ZulipTestServer) -> User:
    """The bot account."""
    return zs.add_user("lessonbot-bot@example.com", "Lessonbot", bot=True)


@pytest.fixture
def alice(zs: ZulipTestServer) -> User:
    """A student."""
    return zs.add_user("alice@example.com", "Alice Student")


@pytest.fixture
def bob(zs: ZulipTestServer) -> User:
    """Another student."""
    return zs.add_user("bob@example.com", "Bob Student")
