"""Drive's resumable upload protocol, streamed to disk.

A session starts with ``POST /upload/drive/v3/files?uploadType=resumable`` and
continues with ``PUT`` requests to the session URI carrying ``Content-Range``.
Bytes are appended to a file and hashed as they arrive; only whole 256 KiB
blocks are committed until the final chunk, so a connection that breaks mid-chunk
leaves the session at a 256 KiB boundary the client can resume from.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ApiError, legacy_error
from .httpd import Request

BLOCK = 256 * 1024
CONTENT_RANGE = re.compile(r"bytes (?:(?P<first>\d+)-(?P<last>\d+)|\*)/(?P<total>\d+|\*)$")


@dataclass
class ChunkRange:
    """A parsed ``Content-Range`` header; ``first`` None means a status query."""

    first: int | None
    last: int | None
    total: int | None

    @property
    def length(self) -> int:
        return 0 if self.first is None or self.last is None else self.last - self.first + 1


def parse_content_range(request: Request) -> ChunkRange:
    """The chunk a PUT carries (a missing header means the whole upload at once)."""
    header = request.header("content-range")
    if header is None:
        length = request.content_length
        return ChunkRange(0 if length else None, length - 1 if length else None, length)
    match = CONTENT_RANGE.match(header.strip())
    if match is None:
        raise bad_request(f"Invalid Content-Range header: {header}")
    total = None if match["total"] == "*" else int(match["total"])
    if match["first"] is None:
        return ChunkRange(None, None, total)
    return ChunkRange(int(match["first"]), int(match["last"]), total)


def bad_request(message: str) -> ApiError:
    """400 in Drive's shape."""
    return legacy_error(400, message, "badRequest")


@dataclass
class UploadSession:
    """One resumable upload in progress."""

    upload_id: str
    path: Path
    metadata: dict[str, Any]
    mime_type: str
    declared_total: int | None
    options: dict[str, Any]
    created_by: Any
    committed: int = 0
    total: int | None = None
    complete: bool = False
    file_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _md5: Any = field(default_factory=hashlib.md5)

    def __post_init__(self) -> None:
        self.total = self.declared_total
        self.path.touch()

    @property
    def md5_hex(self) -> str:
        return str(self._md5.hexdigest())

    def range_header(self) -> dict[str, str]:
        """The ``Range`` header of a 308 answer (absent when nothing is stored)."""
        return {"Range": f"bytes=0-{self.committed - 1}"} if self.committed else {}

    def check_chunk(self, chunk: ChunkRange, content_length: int) -> bool:
        """Validate a data chunk; returns True if it is the final one."""
        if chunk.first is None or chunk.last is None:
            raise bad_request("Content-Range has no byte range.")
        if chunk.length != content_length:
            raise bad_request("Content-Range does not match Content-Length.")
        if chunk.first > self.committed:
            raise bad_request(
                f"Invalid request. According to the Content-Range header, the upload offset is "
                f"{chunk.first} byte(s), which exceeds already uploaded size of {self.committed} byte(s)."
            )
        if chunk.total is not None and self.total is not None and chunk.total != self.total:
            raise bad_request("Content-Range total does not match X-Upload-Content-Length.")
        final = chunk.total is not None and chunk.last + 1 == chunk.total
        if not final and chunk.length % BLOCK:
            raise bad_request(
                f"Invalid request. The number of bytes uploaded is required to be equal or greater "
                f"than {BLOCK}, except for the final request. Non-final chunks must be multiples of "
                f"{BLOCK} bytes; got {chunk.length}."
            )
        return final

    def receive(self, request: Request, chunk: ChunkRange, final: bool) -> None:
        """Append the chunk's new bytes to disk, hashing committed 256 KiB blocks."""
        assert chunk.first is not None
        skip = self.committed - chunk.first  # bytes the server already holds
        pending = bytearray()
        with self.path.open("r+b") as out:
            out.seek(self.committed)
            try:
                for data in request.iter_body():
                    if skip:
                        cut = min(skip, len(data))
                        data, skip = data[cut:], skip - cut
                    pending += data
                    self._commit_blocks(out, pending, keep_tail=True)
            finally:
                out.truncate(self.committed)
            if final:
                self._commit_blocks(out, pending, keep_tail=False)
                self.total = chunk.total
                self.complete = True

    def _commit_blocks(self, out: Any, pending: bytearray, keep_tail: bool) -> None:
        size = len(pending) - (len(pending) % BLOCK) if keep_tail else len(pending)
        if size:
            view = memoryview(pending)[:size]
            out.write(view)
            self._md5.update(view)
            view.release()
            del pending[:size]
            self.committed += size
