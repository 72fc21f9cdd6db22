"""Drive v3: files (folders, uploads, search, download, delete) and Shared Drives.

File contents live on disk under the server's storage directory. Shared-drive
items are visible only to callers that pass ``supportsAllDrives=true`` (and,
for listing, ``includeItemsFromAllDrives=true``), as on the real API.
"""

from __future__ import annotations

import copy
import email.message
import email.parser
import email.policy
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Call, Ids, now_string, paginate
from .drive_query import QueryError, compile_query
from .errors import ApiError, invalid_argument, legacy_error
from .faults import Clock
from .httpd import Request, Response
from .uploads import UploadSession, bad_request, parse_content_range

API = "drive"
FOLDER = "application/vnd.google-apps.folder"
ROOT_ID = "0AMyDriveRootFolderPVA"
UPLOAD_PATH = "/upload/drive/v3/files"
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"
DEFAULT_FIELDS = {
    "drive.files.list": f"kind,nextPageToken,incompleteSearch,files({DEFAULT_FILE_FIELDS})",
    "drive.files.get": DEFAULT_FILE_FIELDS,
    "drive.files.create": DEFAULT_FILE_FIELDS,
    "drive.files.update": DEFAULT_FILE_FIELDS,
    "drive.files.copy": DEFAULT_FILE_FIELDS,
    "drive.drives.list": "kind,nextPageToken,drives(kind,id,name)",
    "drive.drives.get": "kind,id,name",
    "drive.drives.create": "kind,id,name",
}
WRITABLE = {
    "name",
    "mimeType",
    "parents",
    "description",
    "appProperties",
    "properties",
    "starred",
    "modifiedTime",
    "createdTime",
    "originalFilename",
}


def _payload(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def file_not_found(file_id: str) -> ApiError:
    """Drive's 404 for a file the caller cannot see."""
    return legacy_error(404, f"File not found: {file_id}.", "notFound", location="fileId", locationType="parameter")


class Drive:
    """In-memory Drive metadata, with contents on disk."""

    def __init__(self, clock: Clock, ids: Ids, storage: Path, lock: threading.RLock) -> None:
        self.clock, self.ids, self.lock = clock, ids, lock
        self.files_dir, self.uploads_dir = storage / "files", storage / "uploads"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict[str, Any]] = {}
        self.drives: dict[str, dict[str, Any]] = {}
        self.drive_requests: dict[str, str] = {}
        self.sessions: dict[str, UploadSession] = {}

    def handlers(self) -> dict[str, Callable[[Call], Any]]:
        """Method id → implementation (uploads and downloads stream outside the lock)."""
        return {
            "drive.files.list": self.list_files,
            "drive.files.get": self.get_file,
            "drive.files.create": self.create_file,
            "drive.files.delete": self.delete_file,
            "drive.files.update": self.update_file,
            "drive.drives.list": self.list_drives,
            "drive.drives.get": self.get_drive,
            "drive.drives.create": self.create_drive,
            "drive.drives.delete": self.delete_drive,
        }

    @staticmethod
    def streams(call: Call) -> bool:
        """True for calls that move file bytes (handled without the global lock)."""
        return call.matched.route.is_upload or call.query.get("alt") == "media"

    # --- control API -------------------------------------------------------------------

    def add_drive(self, name: str) -> str:
        """Create a Shared Drive; returns its id."""
        with self.lock:
            drive_id = "0A" + self.ids.opaque("drive")[1:]
            self.drives[drive_id] = {
                "kind": "drive#drive",
                "id": drive_id,
                "name": name,
                "createdTime": now_string(self.clock),
                "hidden": False,
            }
            return drive_id

    def add_file(self, metadata: dict[str, Any], content: bytes | None = None) -> str:
        """Create a file (or a folder when ``content`` is None and mimeType says so)."""
        with self.lock:
            resource = self._new_resource(metadata, supports_all_drives=True)
            if content is not None:
                path = self.files_dir / resource["id"]
                path.write_bytes(content)
                self._set_content(resource, len(content), hashlib.md5(content).hexdigest())
            self.files[resource["id"]] = resource
            return str(resource["id"])

    def content_path(self, file_id: str) -> Path:
        """Where a file's bytes are stored."""
        return self.files_dir / file_id

    # --- helpers -----------------------------------------------------------------------

    def _visible(self, file_id: str, supports_all_drives: bool) -> dict[str, Any]:
        resource = self.files.get(file_id)
        if resource is None or (resource.get("driveId") and not supports_all_drives):
            raise file_not_found(file_id)
        return resource

    def _parent_drive(self, parent: str, supports_all_drives: bool) -> str | None:
        if parent in ("root", ROOT_ID):
            return None
        if parent in self.drives:
            if not supports_all_drives:
                raise file_not_found(parent)
            return parent
        folder = self._visible(parent, supports_all_drives)
        if folder["mimeType"] != FOLDER:
            raise legacy_error(400, "The parent is not a folder.", "invalidParent")
        return folder.get("driveId")

    def _new_resource(self, metadata: dict[str, Any], supports_all_drives: bool) -> dict[str, Any]:
        unknown = set(metadata) - WRITABLE
        if unknown:
            raise legacy_error(403, "The resource body includes fields which are not directly writable.", "fieldNotWritable")
        parents = [ROOT_ID if p == "root" else p for p in metadata.get("parents") or [ROOT_ID]]
        if len(parents) != 1:
            raise legacy_error(403, "A file can only have one parent.", "cannotAddParent")
        drive_id = self._parent_drive(parents[0], supports_all_drives)
        now = now_string(self.clock)
        resource = {
            "kind": "drive#file",
            "id": self.ids.opaque("file"),
            "name": "Untitled",
            "mimeType": "application/octet-stream",
            "trashed": False,
            "starred": False,
            "createdTime": now,
            "modifiedTime": now,
        }
        resource.update(copy.deepcopy(metadata))
        resource["parents"] = parents
        if drive_id:
            resource["driveId"] = drive_id
        return resource

    @staticmethod
    def _set_content(resource: dict[str, Any], size: int, md5: str) -> None:
        resource["size"] = str(size)
        resource["md5Checksum"] = md5

    def _store(self, resource: dict[str, Any], source: Path, size: int, md5: str) -> dict[str, Any]:
        os.replace(source, self.files_dir / resource["id"])
        self._set_content(resource, size, md5)
        with self.lock:
            self.files[resource["id"]] = resource
        return copy.deepcopy(resource)

    # --- files -------------------------------------------------------------------------

    def list_files(self, call: Call) -> dict[str, Any]:
        """drive.files.list: q, corpora, driveId, shared-drive flags, paging."""
        include_drives = self._check_corpora(call.query)
        try:
            predicate = compile_query(call.query["q"]) if call.query.get("q") else (lambda item: True)
        except QueryError as error:
            raise legacy_error(400, f"Invalid Value: {error}", "invalid", location="q", locationType="parameter") from None
        drive_id = call.query.get("driveId")

        def in_corpus(item: dict[str, Any]) -> bool:
            if drive_id:
                return bool(item.get("driveId") == drive_id)
            return include_drives or not item.get("driveId")

        matches = [copy.deepcopy(item) for item in self.files.values() if in_corpus(item) and predicate(item)]
        matches.sort(key=lambda item: item["modifiedTime"], reverse=True)
        page, token = paginate(API, matches, call.query.get("pageSize"), call.query.get("pageToken"), 100, 1000)
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False, "files": page}
        if token:
            body["nextPageToken"] = token
        return body

    @staticmethod
    def _check_corpora(query: dict[str, Any]) -> bool:
        corpora, drive_id = query.get("corpora", "user"), query.get("driveId")
        include = bool(query.get("includeItemsFromAllDrives"))
        if include and not query.get("supportsAllDrives"):
            raise legacy_error(
                403,
                "The includeItemsFromAllDrives parameter can only be set to true when supportsAllDrives is also set to true.",
                "incompatibleParameters",
            )
        if (corpora == "drive") != (drive_id is not None):
            raise legacy_error(
                400,
                "The driveId parameter must be specified if and only if corpora is set to drive.",
                "invalid",
                location="driveId",
                locationType="parameter",
            )
        if corpora in ("drive", "allDrives") and not include:
            raise legacy_error(
                403,
                f"The includeItemsFromAllDrives parameter must be set to true when corpora is {corpora}.",
                "incompatibleParameters",
            )
        return include

    def get_file(self, call: Call) -> Any:
        """drive.files.get (metadata, or the bytes with alt=media and Range)."""
        with self.lock:
            resource = copy.deepcopy(self._visible(call.path["fileId"], bool(call.query.get("supportsAllDrives"))))
        if call.query.get("alt") == "media":
            return self._download(call.request, resource)
        return resource

    def _download(self, request: Request, resource: dict[str, Any]) -> Response:
        if resource["mimeType"] == FOLDER or "size" not in resource:
            raise legacy_error(403, "Only files with binary content can be downloaded.", "fileNotDownloadable")
        size = int(resource["size"])
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.header("range") or "")
        if not match:
            return Response(200, file=(self.content_path(resource["id"]), 0, size), content_type=resource["mimeType"])
        first = int(match[1])
        last = min(int(match[2]) if match[2] else size - 1, size - 1)
        if first >= size:
            return Response(416, raw=b"", headers={"Content-Range": f"bytes */{size}"})
        return Response(
            206,
            file=(self.content_path(resource["id"]), first, last - first + 1),
            content_type=resource["mimeType"],
            headers={"Content-Range": f"bytes {first}-{last}/{size}"},
        )

    def delete_file(self, call: Call) -> Response:
        """drive.files.delete (folders take their descendants along)."""
        root = self._visible(call.path["fileId"], bool(call.query.get("supportsAllDrives")))
        doomed, frontier = [], [root["id"]]
        while frontier:
            current = frontier.pop()
            doomed.append(current)
            frontier.extend(i for i, f in self.files.items() if current in f.get("parents", []))
        for file_id in doomed:
            self.files.pop(file_id, None)
            self.content_path(file_id).unlink(missing_ok=True)
        return Response(204, raw=b"")

    def update_file(self, call: Call) -> dict[str, Any]:
        """drive.files.update: metadata (rename, trash, move with addParents/removeParents)."""
        if call.matched.route.is_upload:
            call.request.drain()
            raise bad_request("Replacing file content is not supported by the test server.")
        changes = dict(call.body or {})
        if set(changes) - (WRITABLE | {"trashed"}) or "parents" in changes:
            raise legacy_error(403, "The resource body includes fields which are not directly writable.", "fieldNotWritable")
        with self.lock:
            resource = self._visible(call.path["fileId"], bool(call.query.get("supportsAllDrives")))
            parents = [p for p in resource["parents"] if p not in call.query.get("removeParents", "").split(",")]
            for parent in filter(None, call.query.get("addParents", "").split(",")):
                self._parent_drive(parent, bool(call.query.get("supportsAllDrives")))
                parents.append(parent)
            resource.update(copy.deepcopy(changes), parents=parents, modifiedTime=now_string(self.clock))
            return copy.deepcopy(resource)

    def create_file(self, call: Call) -> Any:
        """drive.files.create: metadata only, or an upload (media, multipart, resumable)."""
        if not call.matched.route.is_upload:
            with self.lock:
                resource = self._new_resource(call.body or {}, bool(call.query.get("supportsAllDrives")))
                self.files[resource["id"]] = resource
                return copy.deepcopy(resource)
        upload_type = call.query.get("uploadType", "media")
        if upload_type == "resumable":
            return self._start_resumable(call)
        if upload_type == "multipart":
            return self._multipart(call)
        if upload_type == "media":
            return self._simple(call)
        raise bad_request(f"Invalid uploadType: {upload_type}")

    def _simple(self, call: Call) -> dict[str, Any]:
        metadata = {"mimeType": call.request.header("content-type", "application/octet-stream")}
        with self.lock:
            resource = self._new_resource(metadata, bool(call.query.get("supportsAllDrives")))
        temp = self.uploads_dir / f"simple-{resource['id']}"
        md5, size = hashlib.md5(), 0
        with temp.open("wb") as out:
            for block in call.request.iter_body():
                out.write(block)
                md5.update(block)
                size += len(block)
        return self._store(resource, temp, size, md5.hexdigest())

    def _multipart(self, call: Call) -> dict[str, Any]:
        content_type = call.request.header("content-type", "")
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + call.request.read_body()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        if len(parts) != 2:
            raise bad_request("Multipart upload needs a metadata part and a media part.")
        metadata = json.loads(_payload(parts[0]) or b"{}")
        content = _payload(parts[1])
        metadata.setdefault("mimeType", parts[1].get_content_type())
        with self.lock:
            resource = self._new_resource(metadata, bool(call.query.get("supportsAllDrives")))
        temp = self.uploads_dir / f"multipart-{resource['id']}"
        temp.write_bytes(content)
        return self._store(resource, temp, len(content), hashlib.md5(content).hexdigest())

    def _start_resumable(self, call: Call) -> Response:
        metadata = call.body or {}
        mime = call.request.header("x-upload-content-type") or metadata.get("mimeType", "application/octet-stream")
        declared = call.request.header("x-upload-content-length")
        with self.lock:
            self._new_resource(
                {**metadata, "mimeType": metadata.get("mimeType", mime)}, bool(call.query.get("supportsAllDrives"))
            )  # validates parents now
            upload_id = self.ids.opaque("upload")[1:]
            self.sessions[upload_id] = UploadSession(
                upload_id=upload_id,
                path=self.uploads_dir / upload_id,
                metadata=metadata,
                mime_type=mime,
                declared_total=int(declared) if declared else None,
                options=dict(call.query),
                created_by=call.identity,
            )
        location = f"{call.request.base_url}{UPLOAD_PATH}?uploadType=resumable&upload_id={upload_id}"
        return Response(200, raw=b"", headers={"Location": location, "X-GUploader-UploadID": upload_id})

    def upload_chunk(self, request: Request, upload_id: str) -> tuple[Response | UploadSession, str | None]:
        """Serve ``PUT`` on a session URI; returns (response or finished session, fields)."""
        with self.lock:
            session = self.sessions.get(upload_id)
        if session is None:
            raise legacy_error(404, "Not Found", "notFound")
        chunk = parse_content_range(request)
        with session.lock:
            if session.complete:
                return session, session.options.get("fields")
            if chunk.first is None:
                if chunk.total is not None and chunk.total == session.committed:
                    return self._finish(session), session.options.get("fields")
                return Response(308, raw=b"", headers=session.range_header()), None
            final = session.check_chunk(chunk, request.content_length)
            session.receive(request, chunk, final)
            if not session.complete:
                return Response(308, raw=b"", headers=session.range_header()), None
            self._finish(session)
            return session, session.options.get("fields")

    def _finish(self, session: UploadSession) -> UploadSession:
        session.complete = True
        with self.lock:
            metadata = {**session.metadata, "mimeType": session.metadata.get("mimeType", session.mime_type)}
            resource = self._new_resource(metadata, bool(session.options.get("supportsAllDrives")))
        self._store(resource, session.path, session.committed, session.md5_hex)
        session.file_id = resource["id"]
        return session

    def expire_sessions(self) -> None:
        """Forget every unfinished upload session (the next PUT answers 404)."""
        with self.lock:
            for upload_id in [u for u, s in self.sessions.items() if not s.complete]:
                self.sessions.pop(upload_id).path.unlink(missing_ok=True)

    # --- shared drives -----------------------------------------------------------------

    def list_drives(self, call: Call) -> dict[str, Any]:
        """drive.drives.list"""
        drives = [copy.deepcopy(d) for d in self.drives.values()]
        page, token = paginate(API, drives, call.query.get("pageSize"), call.query.get("pageToken"), 10, 100)
        body: dict[str, Any] = {"kind": "drive#driveList", "drives": page}
        if token:
            body["nextPageToken"] = token
        return body

    def get_drive(self, call: Call) -> dict[str, Any]:
        """drive.drives.get"""
        drive = self.drives.get(call.path["driveId"])
        if drive is None:
            raise legacy_error(
                404, f"Shared drive not found: {call.path['driveId']}", "notFound", location="driveId", locationType="parameter"
            )
        return copy.deepcopy(drive)

    def create_drive(self, call: Call) -> dict[str, Any]:
        """drive.drives.create (requestId makes it idempotent: a repeat answers 409)."""
        request_id = call.query["requestId"]
        if request_id in self.drive_requests:
            raise legacy_error(409, "A shared drive with this requestId already exists.", "duplicate")
        name = (call.body or {}).get("name")
        if not name:
            raise invalid_argument(API, "A shared drive name is required.")
        drive_id = self.add_drive(name)
        self.drive_requests[request_id] = drive_id
        return copy.deepcopy(self.drives[drive_id])

    def delete_drive(self, call: Call) -> Response:
        """drive.drives.delete (only when empty)."""
        self.get_drive(call)
        if any(f.get("driveId") == call.path["driveId"] for f in self.files.values()):
            raise legacy_error(
                403,
                "The shared drive cannot be deleted because it contains one or more items.",
                "cannotDeleteSharedDriveWithItems",
            )
        del self.drives[call.path["driveId"]]
        return Response(204, raw=b"")
