"""Resumable uploads to a Drive folder (a Shared Drive works), resumed across restarts.

The session URI is saved in the state file before the first byte is sent, so a killed
shipper asks Drive how much it has (``Content-Range: bytes */N``) and goes on from there.
Before a new session, the folder is searched for the file's name: an upload that
finished just before the kill is found there and not sent twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from google.auth.transport.requests import AuthorizedSession

from app.google.client import GoogleError, call, credentials, service
from app.logship.files import StateLocation, digest, load_state, save_state
from app.loop import backoff
from app.settings import Settings

log = logging.getLogger(__name__)
FIELDS = "id,name,size,md5Checksum"
MAX_CHUNK_ERRORS = 8
Progress = Callable[[int], None]


class ShipError(Exception):
    """This file could not be shipped now; it stays on disk and is tried again next pass."""


@dataclass(frozen=True)
class Local:
    path: Path
    size: int
    md5: str


def upload_url(settings: Settings) -> str:
    """Drive's upload endpoint; with an API endpoint override only its host and port change (as in the client)."""
    if settings.google_api_endpoint:
        return f"https://{urlsplit(settings.google_api_endpoint).netloc}/upload/drive/v3/files"
    return "https://www.googleapis.com/upload/drive/v3/files"


class DriveUploader:
    def __init__(self, settings: Settings, layout: StateLocation, folder_id: str, sleep: Callable[[float], None] = time.sleep,
                 *, mime_type: str = "application/gzip", keep_local: bool = False) -> None:
        self.settings = settings
        self.layout = layout
        self.folder_id = folder_id
        self.sleep = sleep
        self.mime_type = mime_type
        self.keep_local = keep_local  # backups stay on disk too; shipped logs are deleted once Drive has them
        self.session = AuthorizedSession(credentials(settings))
        self.chunk = settings.log_upload_chunk_bytes

    # --- Drive lookups ---------------------------------------------------------------------

    def find_remote(self, name: str) -> list[dict[str, Any]]:
        drive = service(self.settings, "drive")
        query = f"name = '{name}' and '{self.folder_id}' in parents and trashed = false"
        request = drive.files().list(q=query, fields=f"files({FIELDS})", supportsAllDrives=True,
                                     includeItemsFromAllDrives=True, pageSize=10)
        return list(call(request, f"looking for {name} on Drive").get("files", []))

    def delete_remote(self, file_id: str) -> None:
        call(service(self.settings, "drive").files().delete(fileId=file_id, supportsAllDrives=True), "deleting a bad copy")

    # --- the resumable protocol ------------------------------------------------------------

    def _start(self, local: Local) -> str:
        response = self.session.post(
            upload_url(self.settings), params={"uploadType": "resumable", "supportsAllDrives": "true", "fields": FIELDS},
            json={"name": local.path.name, "parents": [self.folder_id], "mimeType": self.mime_type},
            headers={"X-Upload-Content-Type": self.mime_type, "X-Upload-Content-Length": str(local.size)}, timeout=60)
        if response.status_code != 200 or "Location" not in response.headers:
            raise ShipError(f"Drive did not open an upload session for {local.path.name}: {response.status_code} "
                            f"{response.text[:200]}")
        return str(response.headers["Location"])

    def _status(self, uri: str, local: Local) -> tuple[int, dict[str, Any] | None]:
        """(bytes Drive has, metadata when complete); (-1, None) when the session is gone."""
        response = self.session.put(uri, headers={"Content-Range": f"bytes */{local.size}"}, timeout=60)
        return self._answer(response)

    @staticmethod
    def _answer(response: requests.Response) -> tuple[int, dict[str, Any] | None]:
        if response.status_code in (200, 201):
            return -2, dict(response.json())
        if response.status_code == 308:
            got = response.headers.get("Range")
            return (int(got.rsplit("-", 1)[1]) + 1 if got else 0), None
        if response.status_code in (404, 410):
            return -1, None
        raise ShipError(f"Drive answered {response.status_code} to an upload: {response.text[:200]}")

    def _put(self, uri: str, handle: Any, offset: int | None, local: Local) -> tuple[int, dict[str, Any] | None]:
        """Send the chunk at offset (None: only ask where the session stands)."""
        if offset is None or offset >= local.size:
            return self._status(uri, local)
        handle.seek(offset)
        data = handle.read(self.chunk)
        headers = {"Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{local.size}"}
        return self._answer(self.session.put(uri, data=data, headers=headers, timeout=300))

    def _send(self, uri: str, local: Local, offset: int, progress: Progress) -> dict[str, Any] | None:
        """Send from offset to the end; the final metadata, or None if the session expired."""
        errors, reported = 0, offset
        position: int | None = offset
        with local.path.open("rb") as handle:
            while True:
                try:
                    have, done = self._put(uri, handle, position, local)
                    errors = 0
                except (requests.RequestException, OSError, ShipError) as error:
                    errors += 1
                    if errors > MAX_CHUNK_ERRORS:
                        raise ShipError(f"uploading {local.path.name} kept failing: {error}") from error
                    log.warning("upload of %s: %s; asking Drive where to resume", local.path.name, error)
                    self.sleep(backoff(errors + 1, initial=0.5, maximum=30.0, jitter=0.5))
                    position = None
                    continue
                if done is not None:
                    progress(local.size - reported)
                    return done
                if have == -1:
                    return None
                if have > reported:
                    progress(have - reported)
                    reported = have
                position = have

    # --- one file --------------------------------------------------------------------------

    def ship(self, path: Path, progress: Progress = lambda n: None) -> str:
        """Upload one file, confirm size and md5, then delete it locally (unless keep_local); Drive's file id."""
        state = load_state(self.layout)
        uploads = state.setdefault("uploads", {})
        entry = uploads.get(path.name)
        if entry is None:
            size, md5 = digest(path)
            entry = {"size": size, "md5": md5}
        local = Local(path, int(entry["size"]), str(entry["md5"]))
        metadata = self._resume(entry, local, progress) if entry.get("session") else None
        if metadata is None:
            metadata = self._existing(local)
        if metadata is None:
            entry["session"] = self._start(local)
            uploads[path.name] = entry
            save_state(self.layout, state)  # before the first byte: a restart resumes this session
            metadata = self._send(entry["session"], local, 0, progress)
            if metadata is None:
                raise ShipError(f"the upload session of {path.name} expired; it starts again next pass")
        return self._confirm(local, metadata, state)

    def _resume(self, entry: dict[str, Any], local: Local, progress: Progress) -> dict[str, Any] | None:
        try:
            have, done = self._status(entry["session"], local)
        except (requests.RequestException, ShipError) as error:
            raise ShipError(f"could not ask Drive about {local.path.name}'s upload: {error}") from error
        if done is not None or have == -1:
            return done
        progress(have)
        log.info("resuming the upload of %s at %d of %d bytes", local.path.name, have, local.size)
        return self._send(entry["session"], local, have, progress)

    def _existing(self, local: Local) -> dict[str, Any] | None:
        """A complete copy already in the folder (the kill came after Drive finished); other copies go."""
        found = None
        for remote in self.find_remote(local.path.name):
            if found is None and int(remote.get("size", -1)) == local.size and remote.get("md5Checksum") == local.md5:
                found = remote
                continue
            log.warning("deleting %s on Drive: a bad or second copy of %s", remote["id"], local.path.name)
            self.delete_remote(str(remote["id"]))
        return found

    def _confirm(self, local: Local, metadata: dict[str, Any], state: dict[str, Any]) -> str:
        state.setdefault("uploads", {}).pop(local.path.name, None)
        if int(metadata.get("size", -1)) != local.size or metadata.get("md5Checksum") != local.md5:
            save_state(self.layout, state)
            self.delete_remote(str(metadata["id"]))
            raise ShipError(f"Drive's copy of {local.path.name} differs (size {metadata.get('size')}, md5 "
                            f"{metadata.get('md5Checksum')}); it was deleted and the file is sent again next pass")
        if not self.keep_local:
            local.path.unlink()  # only now: Drive confirmed size and checksum
        save_state(self.layout, state)
        log.info("shipped %s (%d bytes) to Drive as %s", local.path.name, local.size, metadata["id"])
        return str(metadata["id"])


__all__ = ["DriveUploader", "GoogleError", "ShipError"]
