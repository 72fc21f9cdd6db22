"""HTTP plumbing: a threaded loopback server that speaks HTTP and HTTPS on one port.

The first byte of each connection decides: ``0x16`` is a TLS ClientHello, anything
else is plain HTTP. Request bodies are streamed, never buffered whole, so a
1 GiB upload keeps memory flat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, cast

LOG = logging.getLogger(__name__)
READ_BLOCK = 1024 * 1024
MAX_BUFFERED_BODY = 64 * 1024 * 1024
IDLE_TIMEOUT = 30.0
# httplib2 retries a failed PUT by re-sending an exhausted body stream, i.e. headers
# announcing N bytes and then nothing; give up on such a request after this long.
BODY_TIMEOUT = 5.0


@dataclass
class Request:
    """One HTTP request as the dispatcher sees it."""

    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]
    is_tls: bool
    host: str
    rfile: BinaryIO
    content_length: int
    consumed: int = 0
    caller: str | None = None  # email behind the access token, once authenticated

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name.lower(), default)

    def iter_body(self, block: int = READ_BLOCK) -> Iterator[bytes]:
        """Yield the body in blocks as it arrives."""
        while self.consumed < self.content_length:
            try:
                data = self.rfile.read(min(block, self.content_length - self.consumed))
            except TimeoutError:
                raise ConnectionError("client stalled mid-body") from None
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            self.consumed += len(data)
            yield data

    def read_body(self) -> bytes:
        """The whole body (refuses bodies over 64 MiB)."""
        if self.content_length > MAX_BUFFERED_BODY:
            raise ValueError("request body too large to buffer")
        return b"".join(self.iter_body())

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        data = self.read_body()
        return json.loads(data) if data.strip() else None

    def drain(self) -> None:
        """Read and discard what is left of the body."""
        for _ in self.iter_body():
            pass

    @property
    def base_url(self) -> str:
        """Scheme and host this request arrived on."""
        return f"{'https' if self.is_tls else 'http'}://{self.host}"


@dataclass
class Response:
    """What the dispatcher answers; ``drop`` closes the connection without a reply."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[Path, int, int] | None = None  # path, offset, length
    drop: bool = False

    @classmethod
    def dropped(cls) -> Response:
        """A response that closes the socket instead of answering."""
        return cls(drop=True)

    def payload(self) -> bytes:
        """The bytes of an in-memory body."""
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, indent=1, ensure_ascii=False).encode()


Dispatcher = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackServer
    timeout = IDLE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)

    def _request(self) -> Request:
        path, _, query = self.path.partition("?")
        headers = {key.lower(): value for key, value in self.headers.items()}
        return Request(
            method=self.command,
            raw_path=path,
            raw_query=query,
            headers=headers,
            is_tls=isinstance(self.connection, ssl.SSLSocket),
            host=headers.get("host", f"127.0.0.1:{self.server.server_port}"),
            rfile=cast(BinaryIO, self.rfile),
            content_length=int(headers.get("content-length") or 0),
        )

    def _serve(self) -> None:
        request = self._request()
        self.connection.settimeout(self.server.body_timeout)
        try:
            response = self.server.dispatch(request)
        except ConnectionError:
            response = Response.dropped()  # the client went away (or stalled) mid-request
        except Exception:  # a bug in the fake must not look like a network fault
            LOG.exception("google test server failed on %s %s", self.command, self.path)
            response = Response(500, {"error": {"code": 500, "message": "test server bug", "status": "INTERNAL"}})
        if response.drop:
            self.close_connection = True
            _hard_close(self.connection)
            return
        if request.consumed < request.content_length:
            self.close_connection = True  # unread body: the stream is out of sync
        self._write(response)
        self.connection.settimeout(IDLE_TIMEOUT)

    def _write(self, response: Response) -> None:
        payload = b"" if response.file else response.payload()
        length = response.file[2] if response.file else len(payload)
        self.send_response(response.status)
        if length or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if response.file:
            self._copy_file(*response.file)
        elif payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _copy_file(self, path: Path, offset: int, length: int) -> None:
        with path.open("rb") as stream:
            stream.seek(offset)
            while length > 0:
                block = stream.read(min(READ_BLOCK, length))
                if not block:
                    break
                self.wfile.write(block)
                length -= len(block)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


def _hard_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server bound to 127.0.0.1 only."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, dispatch: Dispatcher, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.dispatch = dispatch
        self.tls = tls
        self.body_timeout = BODY_TIMEOUT
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = self._maybe_wrap_tls(request)
        if connection is None:
            return
        with self._connections_lock:
            self._connections.add(connection)
        try:
            _Handler(connection, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            LOG.debug("connection from %s ended abruptly", client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            if connection is not request:
                connection.close()

    def _maybe_wrap_tls(self, sock: socket.socket) -> socket.socket | None:
        sock.settimeout(IDLE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body go out separately
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first == b"\x16" and self.tls is not None:
                return self.tls.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            LOG.debug("TLS handshake failed")
            return None
        return sock

    def start(self) -> None:
        """Serve in a background daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="google-test-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        self.shutdown()
        with self._connections_lock:
            for connection in list(self._connections):
                _hard_close(connection)
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
