"""Fault injection seen through the real client library and its retry logic."""

from __future__ import annotations

import types
from typing import Any

import httplib2
import pytest
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.errors import HttpError

from .checks import error_body
from .faults import FaultKind
from .server import GoogleTestServer

TRANSPORT_ERRORS = (ConnectionError, OSError, httplib2.HttpLib2Error, TransportError)


@pytest.fixture
def course(gs: GoogleTestServer) -> str:
    return gs.add_course("Git")


def test_429_carries_retry_after_and_resource_exhausted(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    gs.faults.add("classroom", FaultKind.RESOURCE_EXHAUSTED, retry_after=7)

    with pytest.raises(HttpError) as caught:
        classroom.courses().list().execute()

    assert caught.value.resp.status == 429 and caught.value.resp["retry-after"] == "7"
    assert error_body(caught.value)["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_client_retries_through_429_and_5xx(
    gs: GoogleTestServer, classroom: Any, course: str, no_retry_sleep: list[float]
) -> None:
    gs.faults.add("classroom.courses.list", FaultKind.RESOURCE_EXHAUSTED, times=1)
    gs.faults.add("classroom.courses.list", FaultKind.SERVER_ERROR, status=503, times=1)

    listing = classroom.courses().list().execute(num_retries=3)

    assert listing["courses"][0]["id"] == course
    assert gs.call_count("classroom.courses.list") == 3 and len(no_retry_sleep) == 2


@pytest.mark.parametrize(
    ("kind", "reason"),
    [(FaultKind.RATE_LIMIT_EXCEEDED, "rateLimitExceeded"), (FaultKind.USER_RATE_LIMIT_EXCEEDED, "userRateLimitExceeded")],
)
def test_403_quota_errors_have_the_reason_the_client_retries_on(
    gs: GoogleTestServer, drive: Any, kind: FaultKind, reason: str
) -> None:
    fault = gs.faults.add("drive.files.list", kind, times=2)

    with pytest.raises(HttpError) as caught:
        drive.files().list().execute()
    retried = drive.files().list().execute(num_retries=2)

    assert caught.value.resp.status == 403
    assert error_body(caught.value)["error"]["errors"][0] == {
        "message": caught.value.reason,
        "domain": "usageLimits",
        "reason": reason,
    }
    assert retried["files"] == [] and fault.hits == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_use_the_requested_status(gs: GoogleTestServer, sheets: Any, status: int) -> None:
    gs.faults.add("sheets", FaultKind.SERVER_ERROR, status=status)

    with pytest.raises(HttpError) as caught:
        sheets.spreadsheets().create(body={}).execute()

    assert caught.value.resp.status == status


def test_dropped_connection_is_a_transport_error(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    classroom.courses().list().execute()  # token refreshed, connection kept alive
    gs.faults.add("classroom.courses.list", FaultKind.DROP, times=None)

    with pytest.raises(TRANSPORT_ERRORS):
        classroom.courses().list().execute()
    gs.faults.clear()

    assert classroom.courses().list().execute()["courses"]


def test_drop_after_applies_the_change_but_the_client_never_hears(
    gs: GoogleTestServer, classroom: Any, course: str, app_client: tuple[str, str]
) -> None:
    gs.add_student(course, "ann@example.com")
    work = gs.add_coursework(course, "git", created_by_client=app_client[0])
    submission = gs.submissions(course, work)[0]
    gs.faults.add("classroom.courses.courseWork.studentSubmissions.patch", FaultKind.DROP_AFTER, times=None)

    with pytest.raises(TRANSPORT_ERRORS):
        classroom.courses().courseWork().studentSubmissions().patch(
            courseId=course, courseWorkId=work, id=submission["id"], updateMask="assignedGrade", body={"assignedGrade": 9}
        ).execute()

    assert gs.submission_for(course, work, "ann@example.com")["assignedGrade"] == 9


def test_token_endpoint_faults_are_retried_by_google_auth(
    gs: GoogleTestServer, classroom: Any, course: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("google.auth._exponential_backoff.time", types.SimpleNamespace(sleep=lambda _: None))
    gs.faults.add("oauth.token", FaultKind.SERVER_ERROR, status=500, times=1)
    assert classroom.courses().list().execute()["courses"]
    gs.expire_access_tokens()
    gs.faults.add("oauth.token", FaultKind.SERVER_ERROR, status=503, times=None)

    with pytest.raises(RefreshError):
        classroom.courses().list().execute()

    assert gs.call_count("oauth.token") == 2 + 3  # google-auth makes 3 attempts


def test_quota_storm_fails_a_share_of_calls_then_ends(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    storm = gs.faults.storm("classroom", percent=50, seconds=30)
    outcomes = []
    for _ in range(40):
        try:
            classroom.courses().get(id=course).execute()
            outcomes.append(True)
        except HttpError as error:
            assert error.resp.status == 429
            outcomes.append(False)
    gs.clock.advance(31)

    assert 8 <= outcomes.count(False) <= 32 and storm.hits == outcomes.count(False)
    assert classroom.courses().get(id=course).execute()["id"] == course
    assert gs.faults.active == []


def test_faults_match_by_method_api_or_glob(gs: GoogleTestServer) -> None:
    by_api = gs.faults.add("drive", times=None)
    by_glob = gs.faults.add("classroom.courses.courseWork.*", times=None)

    assert by_api.matches("drive.files.list") and by_api.matches("drive.upload.chunk")
    assert not by_api.matches("drives.list")
    assert by_glob.matches("classroom.courses.courseWork.studentSubmissions.patch")
    assert not by_glob.matches("classroom.courses.list")


def test_delay_fault_slows_but_answers(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    gs.faults.add("classroom.courses.get", FaultKind.DELAY, delay=0.2)

    assert classroom.courses().get(id=course).execute()["id"] == course
    record = [r for r in gs.requests if r.call_id == "classroom.courses.get"][-1]
    assert record.seconds >= 0.2
