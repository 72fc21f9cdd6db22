"""Drive v3 through the real client: resumable uploads, search, folders, Shared Drives."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import httplib2
import pytest
import requests
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaFileUpload, MediaInMemoryUpload, MediaIoBaseDownload, MediaIoBaseUpload

from .checks import assert_response, error_body
from .faults import FaultKind
from .server import GoogleTestServer

KIB = 1024
MIB = 1024 * KIB
FOLDER = "application/vnd.google-apps.folder"
TRANSPORT_ERRORS = (ConnectionError, OSError, httplib2.HttpLib2Error)


def _upload(drive: Any, data: bytes, chunk: int = 256 * KIB, **metadata: Any) -> dict[str, Any]:
    media = MediaIoBaseUpload(io.BytesIO(data), mimetype="application/gzip", resumable=True, chunksize=chunk)
    request = drive.files().create(
        body={"name": "log.gz", **metadata},
        media_body=media,
        fields="id,name,size,md5Checksum,parents,driveId",
        supportsAllDrives=True,
    )
    response = None
    while response is None:
        _, response = request.next_chunk()
    return assert_response("drive.files.create", response)


def _start_session(gs: GoogleTestServer, credentials: Any, total: int) -> str:
    credentials.refresh(__import__("google.auth.transport.requests").auth.transport.requests.Request())
    answer = requests.post(
        gs.url + "/upload/drive/v3/files?uploadType=resumable",
        json={"name": "raw.bin"},
        headers={
            "Authorization": f"Bearer {credentials.token}",
            "X-Upload-Content-Type": "application/octet-stream",
            "X-Upload-Content-Length": str(total),
        },
        timeout=10,
    )
    assert answer.status_code == 200
    return answer.headers["Location"]


def test_resumable_upload_in_chunks_stores_bytes_size_and_md5(gs: GoogleTestServer, drive: Any) -> None:
    data = os.urandom(700 * KIB)

    created = _upload(drive, data)

    assert created["size"] == str(len(data)) and created["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert gs.drive_content_path(created["id"]).read_bytes() == data
    assert gs.call_count("drive.upload.chunk") == 3


def test_upload_url_keeps_https_so_server_speaks_tls_on_the_same_port(gs: GoogleTestServer, drive: Any) -> None:
    media = MediaInMemoryUpload(b"abc", mimetype="text/plain", resumable=True)

    request = drive.files().create(body={"name": "a.txt"}, media_body=media)

    assert request.uri.startswith(gs.https_url + "/upload/drive/v3/files?")
    assert "uploadType=resumable" in request.uri


def test_status_query_reports_range_and_non_final_chunks_must_be_256k_multiples(gs: GoogleTestServer, credentials: Any) -> None:
    session = _start_session(gs, credentials, 600 * KIB)
    empty = requests.put(session, headers={"Content-Range": "bytes */614400"}, timeout=10)
    first = requests.put(session, data=b"a" * 256 * KIB, headers={"Content-Range": f"bytes 0-{256 * KIB - 1}/614400"}, timeout=10)
    odd = requests.put(
        session, data=b"b" * 1000, headers={"Content-Range": f"bytes {256 * KIB}-{257 * KIB + 999 - KIB}/614400"}, timeout=10
    )
    status = requests.put(session, headers={"Content-Range": "bytes */614400"}, timeout=10)

    assert empty.status_code == 308 and "Range" not in empty.headers
    assert first.status_code == 308 and first.headers["Range"] == f"bytes=0-{256 * KIB - 1}"
    assert odd.status_code == 400
    assert status.status_code == 308 and status.headers["Range"] == f"bytes=0-{256 * KIB - 1}"


def test_interrupted_upload_resumes_from_server_range(gs: GoogleTestServer, drive: Any) -> None:
    data = os.urandom(1 * MIB + 123)
    gs.body_timeout = 0.3  # httplib2 re-sends an exhausted stream after a drop
    fault = gs.faults.add("drive.upload.chunk", FaultKind.DROP_AFTER, times=2)
    media = MediaIoBaseUpload(io.BytesIO(data), mimetype="application/gzip", resumable=True, chunksize=256 * KIB)
    request = drive.files().create(body={"name": "log.gz"}, media_body=media, fields="id,size,md5Checksum")

    response, failures = None, 0
    while response is None:
        try:
            _, response = request.next_chunk()
        except TRANSPORT_ERRORS:
            failures += 1
            assert failures < 10

    assert fault.hits == 2 and failures >= 1
    assert response["md5Checksum"] == hashlib.md5(data).hexdigest()


def test_expired_upload_session_is_404(gs: GoogleTestServer, drive: Any) -> None:
    media = MediaIoBaseUpload(io.BytesIO(b"x" * 600 * KIB), mimetype="application/gzip", resumable=True, chunksize=256 * KIB)
    request = drive.files().create(body={"name": "log.gz"}, media_body=media)
    request.next_chunk()
    gs.expire_upload_sessions()

    with pytest.raises(HttpError) as caught:
        request.next_chunk()

    assert caught.value.resp.status == 404


def test_large_upload_streams_to_disk_with_bounded_memory(gs: GoogleTestServer, drive: Any, tmp_path: Path) -> None:
    source = tmp_path / "big.log.gz"
    block = os.urandom(MIB)
    with source.open("wb") as out:
        for _ in range(48):
            out.write(block)
    media = MediaFileUpload(str(source), mimetype="application/gzip", resumable=True, chunksize=16 * MIB)
    request = drive.files().create(body={"name": "big.log.gz"}, media_body=media, fields="id,size,md5Checksum")

    tracemalloc.start()
    try:
        response = None
        while response is None:
            _, response = request.next_chunk()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response["size"] == str(48 * MIB)
    assert response["md5Checksum"] == hashlib.md5(block * 48).hexdigest()
    assert peak < 12 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"


def test_multipart_upload_and_get_with_fields(gs: GoogleTestServer, drive: Any) -> None:
    media = MediaInMemoryUpload(b"hello", mimetype="text/plain", resumable=False)
    created = drive.files().create(body={"name": "hello.txt"}, media_body=media).execute()

    got = drive.files().get(fileId=created["id"], fields="size,md5Checksum").execute()
    default = drive.files().get(fileId=created["id"]).execute()

    assert got == {"size": "5", "md5Checksum": hashlib.md5(b"hello").hexdigest()}
    assert set(default) == {"kind", "id", "name", "mimeType"} and default["mimeType"] == "text/plain"
    assert_response("drive.files.get", default)


def test_download_with_media_io_base_download(gs: GoogleTestServer, drive: Any) -> None:
    data = os.urandom(300 * KIB)
    file_id = gs.add_drive_file("blob.bin", data)
    out = io.BytesIO()
    downloader = MediaIoBaseDownload(out, drive.files().get_media(fileId=file_id), chunksize=100 * KIB)

    done = False
    while not done:
        _, done = downloader.next_chunk()

    assert out.getvalue() == data


def test_folders_and_search_by_name_parent_and_trashed(gs: GoogleTestServer, drive: Any) -> None:
    folder = drive.files().create(body={"name": "logs", "mimeType": FOLDER}, fields="id").execute()
    inside = _upload(drive, b"1" * 10, parents=[folder["id"]])
    _upload(drive, b"2" * 10)

    by_parent = (
        drive.files().list(q=f"'{folder['id']}' in parents and trashed = false", fields="files(id,name,parents)").execute()
    )
    by_name = drive.files().list(q="name = 'logs' and mimeType = 'application/vnd.google-apps.folder'").execute()

    assert [f["id"] for f in by_parent["files"]] == [inside["id"]]
    assert [f["id"] for f in by_name["files"]] == [folder["id"]]
    assert_response("drive.files.list", by_name)


def test_files_list_pages(gs: GoogleTestServer, drive: Any) -> None:
    for i in range(5):
        gs.add_drive_file(f"f{i}", b"x")

    first = drive.files().list(pageSize=3).execute()
    second = drive.files().list(pageSize=3, pageToken=first["nextPageToken"]).execute()

    assert len(first["files"]) == 3 and len(second["files"]) == 2 and "nextPageToken" not in second


def test_invalid_query_is_400(drive: Any) -> None:
    with pytest.raises(HttpError) as caught:
        drive.files().list(q="name === 'x'").execute()

    assert caught.value.resp.status == 400
    assert error_body(caught.value)["error"]["errors"][0]["location"] == "q"


def test_shared_drive_files_need_all_drives_flags(gs: GoogleTestServer, drive: Any) -> None:
    shared = drive.drives().create(requestId="req-1", body={"name": "Lessonbot logs"}).execute()
    created = _upload(drive, b"data", parents=[shared["id"]])

    default_list = drive.files().list().execute()
    in_drive = (
        drive.files()
        .list(
            corpora="drive",
            driveId=shared["id"],
            includeItemsFromAllDrives=True,
            supportsAllDrives=True,
            q="name = 'log.gz'",
            fields="files(id,driveId)",
        )
        .execute()
    )
    with pytest.raises(HttpError) as hidden:
        drive.files().get(fileId=created["id"]).execute()

    assert created["driveId"] == shared["id"]
    assert default_list.get("files") == []
    assert in_drive["files"] == [{"id": created["id"], "driveId": shared["id"]}]
    assert hidden.value.resp.status == 404
    assert drive.files().get(fileId=created["id"], supportsAllDrives=True, fields="size").execute() == {"size": "4"}


def test_drive_id_requires_drive_corpora(drive: Any, gs: GoogleTestServer) -> None:
    shared = gs.add_shared_drive("x")

    with pytest.raises(HttpError) as caught:
        drive.files().list(driveId=shared, includeItemsFromAllDrives=True, supportsAllDrives=True).execute()

    assert caught.value.resp.status == 400


def test_drives_list_create_is_idempotent_by_request_id(drive: Any) -> None:
    drive.drives().create(requestId="same", body={"name": "A"}).execute()

    with pytest.raises(HttpError) as caught:
        drive.drives().create(requestId="same", body={"name": "A"}).execute()
    listing = drive.drives().list().execute()

    assert caught.value.resp.status == 409
    assert [d["name"] for d in listing["drives"]] == ["A"]
    assert_response("drive.drives.list", listing)


def test_delete_removes_file_and_folder_children(gs: GoogleTestServer, drive: Any) -> None:
    folder = gs.add_drive_file("old")
    child = gs.add_drive_file("old.log.gz", b"zz", parent=folder)

    assert drive.files().delete(fileId=folder).execute() == ""
    with pytest.raises(HttpError) as caught:
        drive.files().get(fileId=child).execute()

    assert caught.value.resp.status == 404
    assert error_body(caught.value)["error"]["errors"][0]["reason"] == "notFound"
    assert not gs.drive_content_path(child).exists()


def test_update_renames_trashes_and_moves(gs: GoogleTestServer, drive: Any) -> None:
    target = gs.add_drive_file("archive")
    file_id = gs.add_drive_file("a.log.gz", b"a")
    old_parent = gs.drive_file(file_id)["parents"][0]

    renamed = (
        drive.files()
        .update(fileId=file_id, body={"name": "b.log.gz"}, addParents=target, removeParents=old_parent, fields="name,parents")
        .execute()
    )
    drive.files().update(fileId=file_id, body={"trashed": True}).execute()
    visible = drive.files().list(q="trashed = false and name contains '.log'").execute()

    assert renamed == {"name": "b.log.gz", "parents": [target]}
    assert visible["files"] == [] and gs.drive_file(file_id)["trashed"] is True


def test_unknown_fields_in_selector_are_400(drive: Any) -> None:
    with pytest.raises(HttpError) as caught:
        drive.files().list(fields="files(id,nmae)").execute()

    assert caught.value.resp.status == 400
    assert "Invalid field selection files/nmae" in caught.value.reason
