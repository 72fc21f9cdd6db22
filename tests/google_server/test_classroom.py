"""Classroom v1 through the real client: roster, courseWork, grading and the project rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from .checks import assert_response, error_body
from .errors import PROJECT_PERMISSION_DENIED_MESSAGE
from .server import GoogleTestServer

SUBMISSIONS = "classroom.courses.courseWork.studentSubmissions"


@pytest.fixture
def course(gs: GoogleTestServer) -> str:
    course_id = gs.add_course("Интерактивный курс Git", section="2026")
    gs.add_student(course_id, "ann@example.com", "Ann Lee")
    gs.add_student(course_id, "bob@example.com", "Bob Stone")
    return course_id


def _create_assignment(classroom: Any, course_id: str, title: str = "git", state: str = "PUBLISHED") -> dict[str, Any]:
    body = {"title": title, "workType": "ASSIGNMENT", "maxPoints": 100, "state": state}
    created = classroom.courses().courseWork().create(courseId=course_id, body=body).execute()
    return assert_response("classroom.courses.courseWork.create", created)


def _submission(classroom: Any, course_id: str, work_id: str, user: str) -> dict[str, Any]:
    listing = (
        classroom.courses()
        .courseWork()
        .studentSubmissions()
        .list(courseId=course_id, courseWorkId=work_id, userId=user)
        .execute()
    )
    assert_response(f"{SUBMISSIONS}.list", listing)
    (submission,) = listing["studentSubmissions"]
    return submission


def test_courses_list_pages_with_page_token(gs: GoogleTestServer, classroom: Any) -> None:
    names = [f"Course {i}" for i in range(5)]
    for name in names:
        gs.add_course(name)

    seen, token = [], None
    while True:
        page = classroom.courses().list(pageSize=2, pageToken=token).execute()
        assert_response("classroom.courses.list", page)
        seen += [c["name"] for c in page["courses"]]
        token = page.get("nextPageToken")
        if not token:
            break

    assert seen == names
    assert gs.call_count("classroom.courses.list") == 3


def test_bad_page_token_is_400(classroom: Any, course: str) -> None:
    with pytest.raises(HttpError) as caught:
        classroom.courses().list(pageToken="garbage!").execute()

    assert caught.value.resp.status == 400


def test_students_list_has_profile_name_email_and_user_id(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    listing = classroom.courses().students().list(courseId=course).execute()

    assert_response("classroom.courses.students.list", listing)
    ann = listing["students"][0]
    assert ann["profile"]["name"]["fullName"] == "Ann Lee"
    assert ann["profile"]["emailAddress"] == "ann@example.com"
    assert ann["userId"] == gs.add_account("ann@example.com")


def test_created_coursework_is_associated_with_our_project_only(
    gs: GoogleTestServer, classroom: Any, course: str, make_credentials: Callable[..., Credentials]
) -> None:
    work = _create_assignment(classroom, course)
    other_client = gs.add_oauth_client(gs.add_project("someone-else"))
    other = gs.build("classroom", make_credentials(using=other_client))

    mine = classroom.courses().courseWork().get(courseId=course, id=work["id"]).execute()
    theirs = other.courses().courseWork().list(courseId=course).execute()

    assert work["associatedWithDeveloper"] is True and mine["associatedWithDeveloper"] is True
    assert theirs["courseWork"][0]["associatedWithDeveloper"] is False
    assert_response("classroom.courses.courseWork.list", theirs)


def test_coursework_list_defaults_to_published(classroom: Any, course: str) -> None:
    _create_assignment(classroom, course, "draft one", state="DRAFT")
    published = _create_assignment(classroom, course, "live one")

    default = classroom.courses().courseWork().list(courseId=course).execute()
    everything = classroom.courses().courseWork().list(courseId=course, courseWorkStates=["DRAFT", "PUBLISHED"]).execute()

    assert [w["id"] for w in default["courseWork"]] == [published["id"]]
    assert len(everything["courseWork"]) == 2


def test_coursework_without_work_type_is_rejected(classroom: Any, course: str) -> None:
    with pytest.raises(HttpError) as caught:
        classroom.courses().courseWork().create(courseId=course, body={"title": "x"}).execute()

    assert caught.value.resp.status == 400


def test_submissions_filter_by_email_id_and_dash(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    first, second = _create_assignment(classroom, course, "a"), _create_assignment(classroom, course, "b")
    bob_id = gs.add_account("bob@example.com")

    by_email = _submission(classroom, course, first["id"], "bob@example.com")
    by_id = _submission(classroom, course, first["id"], bob_id)
    across = (
        classroom.courses()
        .courseWork()
        .studentSubmissions()
        .list(courseId=course, courseWorkId="-", userId="bob@example.com")
        .execute()
    )

    assert by_email == by_id and by_email["userId"] == bob_id and by_email["state"] == "CREATED"
    assert {s["courseWorkId"] for s in across["studentSubmissions"]} == {first["id"], second["id"]}


def test_grading_sets_grades_and_return_marks_returned(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    work = _create_assignment(classroom, course)
    submission = _submission(classroom, course, work["id"], "ann@example.com")
    api = classroom.courses().courseWork().studentSubmissions()

    patched = api.patch(
        courseId=course,
        courseWorkId=work["id"],
        id=submission["id"],
        updateMask="assignedGrade,draftGrade",
        body={"assignedGrade": 85, "draftGrade": 85},
    ).execute()
    returned = api.return_(courseId=course, courseWorkId=work["id"], id=submission["id"], body={}).execute()

    assert_response(f"{SUBMISSIONS}.patch", patched)
    assert patched["assignedGrade"] == 85 and patched["draftGrade"] == 85
    assert_response(f"{SUBMISSIONS}.return", returned)
    stored = gs.submission_for(course, work["id"], "ann@example.com")
    assert stored["state"] == "RETURNED" and stored["assignedGrade"] == 85


def test_return_does_not_copy_draft_grade(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    work = _create_assignment(classroom, course)
    submission = _submission(classroom, course, work["id"], "ann@example.com")
    api = classroom.courses().courseWork().studentSubmissions()

    api.patch(
        courseId=course, courseWorkId=work["id"], id=submission["id"], updateMask="draftGrade", body={"draftGrade": 70}
    ).execute()
    api.return_(courseId=course, courseWorkId=work["id"], id=submission["id"], body={}).execute()

    stored = gs.submission_for(course, work["id"], "ann@example.com")
    assert stored["state"] == "RETURNED" and stored["draftGrade"] == 70 and "assignedGrade" not in stored


def test_grading_foreign_coursework_is_project_permission_denied(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    foreign = gs.add_coursework(course, "Интерактивный урок по Git")  # made in the Classroom UI
    submission = _submission(classroom, course, foreign, "ann@example.com")
    api = classroom.courses().courseWork().studentSubmissions()

    with pytest.raises(HttpError) as caught:
        api.patch(
            courseId=course, courseWorkId=foreign, id=submission["id"], updateMask="assignedGrade", body={"assignedGrade": 1}
        ).execute()
    with pytest.raises(HttpError) as returned:
        api.return_(courseId=course, courseWorkId=foreign, id=submission["id"], body={}).execute()

    assert caught.value.resp.status == 403 and returned.value.resp.status == 403
    assert error_body(caught.value) == {
        "error": {"code": 403, "message": PROJECT_PERMISSION_DENIED_MESSAGE, "status": "PERMISSION_DENIED"}
    }
    assert "ProjectPermissionDenied" in caught.value.reason
    assert submission["associatedWithDeveloper"] is False
    assert "assignedGrade" not in gs.submission_for(course, foreign, "ann@example.com")


def test_coursework_created_by_our_client_via_control_api_is_gradable(
    gs: GoogleTestServer, classroom: Any, course: str, app_client: tuple[str, str]
) -> None:
    work_id = gs.add_coursework(course, "git", created_by_client=app_client[0])
    submission = _submission(classroom, course, work_id, "bob@example.com")

    classroom.courses().courseWork().studentSubmissions().patch(
        courseId=course, courseWorkId=work_id, id=submission["id"], updateMask="assignedGrade", body={"assignedGrade": 50}
    ).execute()

    assert gs.grade_history(course, work_id) == [{"submissionId": submission["id"], "assignedGrade": 50}]


@pytest.mark.parametrize(
    ("mask", "status"),
    [(None, 400), ("state", 400), ("assignedGrade,late", 400), ("assignedGrade", 200)],
)
def test_patch_update_mask_is_required_and_limited(classroom: Any, course: str, mask: str | None, status: int) -> None:
    work = _create_assignment(classroom, course)
    submission = _submission(classroom, course, work["id"], "ann@example.com")
    request = (
        classroom.courses()
        .courseWork()
        .studentSubmissions()
        .patch(courseId=course, courseWorkId=work["id"], id=submission["id"], updateMask=mask, body={"assignedGrade": 3})
    )

    if status == 200:
        assert request.execute()["assignedGrade"] == 3
        return
    with pytest.raises(HttpError) as caught:
        request.execute()
    assert caught.value.resp.status == status


def test_students_added_later_get_submissions(gs: GoogleTestServer, classroom: Any, course: str) -> None:
    work = _create_assignment(classroom, course)
    gs.add_student(course, "cat@example.com", "Cat Late")

    assert _submission(classroom, course, work["id"], "cat@example.com")["state"] == "CREATED"


def test_unknown_course_is_404_not_found(classroom: Any) -> None:
    with pytest.raises(HttpError) as caught:
        classroom.courses().courseWork().list(courseId="123").execute()

    assert caught.value.resp.status == 404
    assert error_body(caught.value)["error"]["status"] == "NOT_FOUND"
