"""lessonbot_google_authorized: `status`'s Google check as a gauge, against the Google test server."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.metrics import scrape as scrape_module
from tests.google.conftest import GoogleWorld, authorized, gs, lessons_dir, settings, world  # noqa: F401  (fixtures)
from tests.google_server import FaultKind
from tests.metrics.scrape import samples

GAUGE = ("lessonbot_google_authorized", frozenset())


@pytest.fixture(autouse=True)
def fresh_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no answer cached in this process."""
    monkeypatch.setattr(scrape_module, "google_check", scrape_module.GoogleCheck())


def scrape(client: FlaskClient) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return samples(answer.get_data(as_text=True))


def test_a_stored_authorization_that_refreshes_reads_1_and_is_checked_once_per_interval(
        client: FlaskClient, authorized: GoogleWorld) -> None:  # noqa: F811
    assert scrape(client)[GAUGE] == 1
    refreshes = authorized.gs.call_count("oauth.token")
    assert scrape(client)[GAUGE] == 1
    assert authorized.gs.call_count("oauth.token") == refreshes  # the answer of this interval, not a new refresh


def test_a_revoked_authorization_reads_0(client: FlaskClient, authorized: GoogleWorld,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape_module, "GOOGLE_CHECK_SECONDS", 0.0)
    assert scrape(client)[GAUGE] == 1
    authorized.gs.revoke(authorized.refresh_token)
    assert scrape(client)[GAUGE] == 0


def test_no_authorization_yet_reads_0(client: FlaskClient, world: GoogleWorld) -> None:  # noqa: F811
    assert scrape(client)[GAUGE] == 0


def test_google_out_of_reach_keeps_the_last_answer(client: FlaskClient, authorized: GoogleWorld,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape_module, "GOOGLE_CHECK_SECONDS", 0.0)
    assert scrape(client)[GAUGE] == 1
    authorized.gs.faults.add("oauth.token", FaultKind.SERVER_ERROR, times=10, status=503)
    assert scrape(client)[GAUGE] == 1
    assert authorized.gs.call_count("oauth.token") >= 2  # it did ask, and Google did not answer
