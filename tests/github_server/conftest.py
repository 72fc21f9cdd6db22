"""Fixtures for the GitHub test server's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract import ContractChecker, WebhookContract
from .server import GitHubTestServer


@pytest.fixture(scope="session")
def github_contract() -> ContractChecker:
    """One checker for the session (parsing GitHub's description takes a moment)."""
    return ContractChecker()


@pytest.fixture(scope="session")
def webhook_contract() -> WebhookContract:
    return WebhookContract()


@pytest.fixture
def gh(github_contract: ContractChecker, webhook_contract: WebhookContract) -> Iterator[GitHubTestServer]:
    """A running server whose every exchange is checked against GitHub's OpenAPI description, and every
    webhook delivery against GitHub's webhooks description."""
    already, hooks_already = len(github_contract.violations), len(webhook_contract.violations)
    with GitHubTestServer() as server:
        server.add_observer(github_contract)
        server.webhooks.observers.append(webhook_contract)
        yield server
        assert server.api is not None and not server.api.observer_errors
    new = github_contract.violations[already:] + webhook_contract.violations[hooks_already:]
    assert not new, "contract violations:\n" + "\n".join(map(str, new))
