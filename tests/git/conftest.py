"""The production web stack (nginx site + uWSGI + fcgiwrap/git-http-backend) for the git tests that attack it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SECRETS
from tests.stack import Stack, leftover_processes, running_stack


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[Stack]:
    """One stack per test module; it must stop without leaving a process behind."""
    with running_stack(database_url, SECRETS) as running:
        yield running
    assert leftover_processes(running.root) == []
