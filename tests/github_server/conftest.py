"""Fixtures for the GitHub test server's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract import ContractChecker
from .server import GitHubTestServer


@pytest.fixture(scope="session")
def github_contract() -> ContractChecker:
    """One checker for the session (parsing GitHub's description takes a moment)."""
    return ContractChecker()


@pytest.fixture
def gh(github_contract: ContractChecker) -> Iterator[GitHubTestServer]:
    """A running server whose every exchange is checked against GitHub's OpenAPI description."""
    already = len(github_contract.violations)
    with GitHubTestServer() as server:
        server.add_observer(github_contract)
        yield server
        assert server.api is not None and not server.api.observer_errors
    new = github_contract.violations[already:]
    assert not new, "contract violations:\n" + "\n".join(map(str, new))
