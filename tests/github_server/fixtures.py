"""The GitHub test server as a pytest fixture, for its own tests and the app's (a plugin of tests/conftest.py).

Every exchange with it is checked against GitHub's OpenAPI description, and every webhook
delivery it makes against GitHub's webhooks description; a violation fails the test that
caused it. The modules are imported when a test first asks, not when pytest starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.github_server.contract import ContractChecker, WebhookContract
    from tests.github_server.server import GitHubTestServer


@pytest.fixture(scope="session")
def github_contract() -> ContractChecker:
    """One checker for the session (parsing GitHub's description takes a moment)."""
    from tests.github_server.contract import ContractChecker

    return ContractChecker()


@pytest.fixture(scope="session")
def webhook_contract() -> WebhookContract:
    from tests.github_server.contract import WebhookContract

    return WebhookContract()


@pytest.fixture
def gh(github_contract: ContractChecker, webhook_contract: WebhookContract) -> Iterator[GitHubTestServer]:
    """A running GitHub test server, checked against GitHub's descriptions."""
    from tests.github_server.server import GitHubTestServer

    already, hooks_already = len(github_contract.violations), len(webhook_contract.violations)
    with GitHubTestServer() as server:
        server.add_observer(github_contract)
        server.webhooks.observers.append(webhook_contract)
        yield server
        assert server.api is not None and not server.api.observer_errors
    new = github_contract.violations[already:] + webhook_contract.violations[hooks_already:]
    assert not new, "GitHub contract violations:\n" + "\n".join(map(str, new))
