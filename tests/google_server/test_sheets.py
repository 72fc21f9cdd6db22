"""Sheets v4 through the real client: a gradebook's worth of values calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from .checks import assert_response, error_body
from .server import GoogleTestServer

HEADER = ["time", "student", "email", "course", "lesson", "points", "max"]


@pytest.fixture
def book(sheets: Any) -> str:
    created = sheets.spreadsheets().create(body={"properties": {"title": "Grades"}}).execute()
    assert_response("sheets.spreadsheets.create", created)
    return str(created["spreadsheetId"])


def _values(sheets: Any) -> Any:
    return sheets.spreadsheets().values()


def test_create_and_get_spreadsheet(sheets: Any, book: str) -> None:
    got = sheets.spreadsheets().get(spreadsheetId=book).execute()

    assert_response("sheets.spreadsheets.get", got)
    assert got["properties"]["title"] == "Grades"
    assert got["sheets"][0]["properties"]["title"] == "Sheet1"


def test_update_then_get_formatted_and_unformatted(sheets: Any, book: str) -> None:
    updated = (
        _values(sheets)
        .update(spreadsheetId=book, range="Sheet1!A1:G1", valueInputOption="RAW", body={"values": [HEADER]})
        .execute()
    )
    _values(sheets).update(
        spreadsheetId=book,
        range="Sheet1!A2",
        valueInputOption="USER_ENTERED",
        body={"values": [["2026-11-22", "Ann", "ann@example.com", "git", "basics", "85", 100]]},
    ).execute()

    formatted = _values(sheets).get(spreadsheetId=book, range="Sheet1!A1:G").execute()
    raw = _values(sheets).get(spreadsheetId=book, range="Sheet1!F2:G2", valueRenderOption="UNFORMATTED_VALUE").execute()

    assert_response("sheets.spreadsheets.values.update", updated)
    assert updated["updatedRange"] == "Sheet1!A1:G1" and updated["updatedCells"] == 7
    assert_response("sheets.spreadsheets.values.get", formatted)
    assert formatted["range"] == "Sheet1!A1:G1000"
    assert formatted["values"][1][5:] == ["85", "100"]
    assert raw["values"] == [[85, 100]]


def test_append_goes_after_the_last_row_of_the_table(gs: GoogleTestServer, sheets: Any, book: str) -> None:
    _values(sheets).update(spreadsheetId=book, range="Sheet1!A1", valueInputOption="RAW", body={"values": [HEADER]}).execute()

    first = (
        _values(sheets)
        .append(
            spreadsheetId=book,
            range="Sheet1!A1:G",
            valueInputOption="USER_ENTERED",
            insertDataOption="INSERT_ROWS",
            body={"values": [["t1", "Ann"]]},
        )
        .execute()
    )
    second = (
        _values(sheets)
        .append(
            spreadsheetId=book,
            range="Sheet1!A1:G",
            valueInputOption="USER_ENTERED",
            body={"values": [["t2", "Bob"], ["t3", "Cat"]]},
        )
        .execute()
    )

    assert_response("sheets.spreadsheets.values.append", second)
    assert first["updates"]["updatedRange"] == "Sheet1!A2:B2" and first["tableRange"] == "Sheet1!A1:G1"
    assert second["updates"]["updatedRange"] == "Sheet1!A3:B4"
    assert [row[:2] for row in gs.sheet_values(book)] == [HEADER[:2], ["t1", "Ann"], ["t2", "Bob"], ["t3", "Cat"]]


def test_batch_update_and_batch_get_with_quoted_sheet_names(gs: GoogleTestServer, sheets: Any, book: str) -> None:
    added = (
        sheets.spreadsheets()
        .batchUpdate(spreadsheetId=book, body={"requests": [{"addSheet": {"properties": {"title": "Git course"}}}]})
        .execute()
    )
    result = (
        _values(sheets)
        .batchUpdate(
            spreadsheetId=book,
            body={
                "valueInputOption": "RAW",
                "data": [{"range": "'Git course'!A1:B1", "values": [["a", "b"]]}, {"range": "Sheet1!C3", "values": [["c"]]}],
            },
        )
        .execute()
    )
    fetched = _values(sheets).batchGet(spreadsheetId=book, ranges=["'Git course'!A:B", "Sheet1!C3"]).execute()

    assert_response("sheets.spreadsheets.batchUpdate", added)
    assert_response("sheets.spreadsheets.values.batchUpdate", result)
    assert result["totalUpdatedCells"] == 3 and result["totalUpdatedSheets"] == 2
    assert [r["values"] for r in fetched["valueRanges"]] == [[["a", "b"]], [["c"]]]
    assert gs.sheet_values(book, "'Git course'") == [["a", "b"]]


def test_value_input_option_is_required(sheets: Any, book: str) -> None:
    with pytest.raises(HttpError) as caught:
        _values(sheets).update(spreadsheetId=book, range="Sheet1!A1", body={"values": [["x"]]}).execute()

    assert caught.value.resp.status == 400
    assert "valueInputOption" in error_body(caught.value)["error"]["message"]


@pytest.mark.parametrize(
    ("range_a1", "values"),
    [("Nope!A1", [["x"]]), ("Sheet1!A1:B1", [["x", "y", "z"]]), ("Sheet1!A1000", [["x"], ["y"]])],
)
def test_bad_ranges_are_400(sheets: Any, book: str, range_a1: str, values: list[list[str]]) -> None:
    with pytest.raises(HttpError) as caught:
        _values(sheets).update(spreadsheetId=book, range=range_a1, valueInputOption="RAW", body={"values": values}).execute()

    assert caught.value.resp.status == 400
    assert error_body(caught.value)["error"]["status"] == "INVALID_ARGUMENT"


def test_clear_empties_the_range(gs: GoogleTestServer, sheets: Any, book: str) -> None:
    _values(sheets).update(
        spreadsheetId=book, range="Sheet1!A1", valueInputOption="RAW", body={"values": [["a", "b"], ["c", "d"]]}
    ).execute()

    cleared = _values(sheets).clear(spreadsheetId=book, range="Sheet1!B1:B2", body={}).execute()

    assert cleared["clearedRange"] == "Sheet1!B1:B2"
    assert gs.sheet_values(book) == [["a"], ["c"]]


def test_per_user_write_quota_answers_429_until_the_next_minute(gs: GoogleTestServer, sheets: Any, book: str) -> None:
    gs.sheets_quota.configure(read_per_minute=None, write_per_minute=4)  # creating the book was one
    append = _values(sheets).append(spreadsheetId=book, range="Sheet1!A:G", valueInputOption="RAW", body={"values": [["row"]]})
    for _ in range(3):
        append.execute()

    with pytest.raises(HttpError) as caught:
        append.execute()
    gs.clock.advance(60)
    append.execute()

    assert caught.value.resp.status == 429
    assert int(caught.value.resp["retry-after"]) <= 60
    body = error_body(caught.value)["error"]
    assert body["status"] == "RESOURCE_EXHAUSTED" and "WriteRequestsPerMinutePerUser" in body["message"]
    assert gs.sheets_quota.usage("teacher@example.com") == 1
    assert len(gs.sheet_values(book)) == 4


def test_unknown_spreadsheet_is_404(sheets: Any) -> None:
    with pytest.raises(HttpError) as caught:
        _values(sheets).get(spreadsheetId="missing", range="A1").execute()

    assert caught.value.resp.status == 404


def test_concurrent_appends_from_many_clients_lose_nothing(gs: GoogleTestServer, credentials: Any, book: str) -> None:
    def worker(number: int) -> None:
        client = gs.build("sheets", credentials)  # httplib2 objects are not thread-safe
        for row in range(5):
            client.spreadsheets().values().append(
                spreadsheetId=book, range="Sheet1!A:B", valueInputOption="RAW", body={"values": [[f"w{number}", row]]}
            ).execute()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(worker, range(4)))

    rows = gs.sheet_values(book)
    assert len(rows) == 20 and len({(r[0], r[1]) for r in rows}) == 20


def test_read_quota_is_per_user(gs: GoogleTestServer, sheets: Any, book: str, make_credentials: Any) -> None:
    gs.sheets_quota.configure(read_per_minute=2, write_per_minute=None)
    other = gs.build("sheets", make_credentials(email="assistant@example.com"))
    read = _values(sheets).get(spreadsheetId=book, range="Sheet1!A1")
    read.execute()
    read.execute()

    with pytest.raises(HttpError) as caught:
        read.execute()
    other_read = _values(other).get(spreadsheetId=book, range="Sheet1!A1").execute()

    assert caught.value.resp.status == 429 and "ReadRequestsPerMinutePerUser" in caught.value.reason
    assert other_read["range"] == "Sheet1!A1"
    assert gs.sheets_quota.usage("teacher@example.com", "read") == 3
