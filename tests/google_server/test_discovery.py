"""The discovery documents as the contract: routing, parameters, schemas, partial responses."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from .checks import error_body, response_problems
from .discovery import DiscoveryIndex, SchemaChecker, apply_fields, load_document, parse_fields
from .server import GoogleTestServer


@pytest.fixture(scope="module")
def index() -> DiscoveryIndex:
    return DiscoveryIndex()


def _bearer(credentials: Credentials) -> dict[str, str]:
    import google.auth.transport.requests

    credentials.refresh(google.auth.transport.requests.Request())
    return {"Authorization": f"Bearer {credentials.token}"}


def test_every_implemented_method_exists_and_routes_back_to_itself(gs: GoogleTestServer, index: DiscoveryIndex) -> None:
    for method_id in gs._handlers:
        method = index.method(method_id)
        sample = "/" + re.sub(r"\{\+?(\w+)\}", lambda m: f"{m[1]}-1", method["path"])
        route = index.match(method["httpMethod"], sample)
        assert route is not None and route.method_id == method_id, (method_id, sample)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"id": "1", "bogus": True}, "unknown field 'bogus'"),
        ({"courseState": "SLEEPING"}, "is not one of"),
        ({"name": 5}, "expected string"),
        ({"creationTime": "yesterday"}, "not a valid google-datetime"),
        ({"teacherFolder": {"id": "x", "title": "t", "extra": 1}}, "$.teacherFolder: unknown field 'extra'"),
    ],
)
def test_schema_checker_flags_classroom_course_problems(value: dict[str, Any], problem: str) -> None:
    problems = SchemaChecker(load_document("classroom")).check(value, "Course")

    assert len(problems) == 1 and problem in problems[0]


def test_schema_checker_types_formats_and_per_method_required() -> None:
    drive = SchemaChecker(load_document("drive"))

    assert drive.check({"size": "12", "md5Checksum": "ab", "trashed": False}, "File") == []
    assert drive.check({"size": 12}, "File") == ["$.size: expected string, got int"]
    assert drive.check({"size": "twelve"}, "File") == ["$.size: 'twelve' is not a valid int64"]
    assert drive.check({"appProperties": {"k": "v"}}, "File") == []
    assert drive.check({"role": "reader"}, "Permission", "drive.permissions.create") == ["$: missing required field 'type'"]
    sheets = SchemaChecker(load_document("sheets"))
    assert sheets.check({"values": [["a", 1, True, None]]}, "ValueRange") == []
    assert sheets.check({"updatedRows": 1.5}, "UpdateValuesResponse") == ["$.updatedRows: expected integer, got float"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("files(id,name),nextPageToken", {"files": [{"id": "1", "name": "a"}], "nextPageToken": "t"}),
        ("files/id", {"files": [{"id": "1"}]}),
        ("*", {"files": [{"id": "1", "name": "a", "size": "3"}], "nextPageToken": "t", "kind": "k"}),
        ("kind", {"kind": "k"}),
    ],
)
def test_fields_selector(selector: str, expected: dict[str, Any]) -> None:
    body = {"files": [{"id": "1", "name": "a", "size": "3"}], "nextPageToken": "t", "kind": "k"}

    assert apply_fields(body, parse_fields(selector)) == expected


def test_unknown_query_parameter_is_rejected_and_recorded(gs: GoogleTestServer, credentials: Credentials) -> None:
    params: dict[str, str | int] = {"pageSize": 1, "color": "red"}
    response = requests.get(gs.url + "/v1/courses", params=params, headers=_bearer(credentials), timeout=10)

    assert response.status_code == 400 and 'Unknown name "color"' in response.json()["error"]["message"]
    assert len(gs.validation_errors) == 1
    gs.validation_errors.clear()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/courses", {"courseStates": "SLEEPING"}),
        ("/v1/courses", {"pageSize": "many"}),
        ("/files", {"supportsAllDrives": "yes"}),
        ("/drives", {"pageSize": "1000"}),
    ],
)
def test_query_values_are_type_checked(gs: GoogleTestServer, credentials: Credentials, path: str, params: dict[str, str]) -> None:
    response = requests.get(gs.url + path, params=params, headers=_bearer(credentials), timeout=10)

    assert response.status_code == 400
    gs.validation_errors.clear()


def test_unknown_path_or_method_is_404(gs: GoogleTestServer, credentials: Credentials) -> None:
    headers = _bearer(credentials)

    assert requests.get(gs.url + "/v1/nonsense", headers=headers, timeout=10).status_code == 404
    assert requests.delete(gs.url + "/v1/courses", headers=headers, timeout=10).status_code == 404
    assert len(gs.validation_errors) == 2
    gs.validation_errors.clear()


def test_request_body_is_checked_against_the_request_schema(gs: GoogleTestServer, classroom: Any) -> None:
    course = gs.add_course("Git")
    body = {"title": "x", "workType": "ASSIGNMENT", "maxPoint": 10}

    with pytest.raises(HttpError) as caught:
        classroom.courses().courseWork().create(courseId=course, body=body).execute()

    assert caught.value.resp.status == 400
    assert "unknown field 'maxPoint'" in error_body(caught.value)["error"]["message"]


def test_drive_answers_with_and_without_service_path(gs: GoogleTestServer, credentials: Credentials) -> None:
    headers = _bearer(credentials)

    short = requests.get(gs.url + "/files", headers=headers, timeout=10)
    full = requests.get(gs.url + "/drive/v3/files", headers=headers, timeout=10)

    assert short.status_code == full.status_code == 200 and short.json() == full.json()


def test_server_records_its_own_response_schema_violations(
    gs: GoogleTestServer, classroom: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = gs.add_course("Git")
    monkeypatch.setitem(gs._handlers, "classroom.courses.get", lambda call: {"id": course, "colour": "red"})

    classroom.courses().get(id=course).execute()

    assert gs.validation_errors == ["classroom.courses.get response: $: unknown field 'colour'"]
    gs.validation_errors.clear()


def test_response_checker_knows_empty_responses() -> None:
    assert response_problems("classroom.courses.courseWork.studentSubmissions.return", {}) == []
    assert response_problems("drive.files.delete", "") == []
    assert response_problems("drive.files.get", {"id": 1}) == ["$.id: expected string, got int"]


def test_malformed_json_body_is_400(gs: GoogleTestServer, credentials: Credentials) -> None:
    course = gs.add_course("Git")
    headers = {**_bearer(credentials), "Content-Type": "application/json"}

    response = requests.post(gs.url + f"/v1/courses/{course}/courseWork", data="{title:", headers=headers, timeout=10)

    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"
