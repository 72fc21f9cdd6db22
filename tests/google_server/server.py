"""GoogleTestServer: the dispatcher and the Python control API tests use.

Usage::

    with GoogleTestServer() as gs:
        client_id, secret = gs.add_oauth_client(gs.add_project("lessonbot"))
        token = gs.issue_refresh_token(client_id, "teacher@example.com", CLASSROOM_SCOPES)
        creds = Credentials(None, refresh_token=token, client_id=client_id,
                            client_secret=secret, token_uri=gs.token_uri)
        classroom = build("classroom", "v1", credentials=creds,
                          client_options={"api_endpoint": gs.url}, static_discovery=True)

Drive uploads: the client keeps ``https`` for the upload URL whatever the
endpoint, so the same port also speaks TLS; make the client trust
:attr:`GoogleTestServer.ca_file` (see :meth:`GoogleTestServer.trust_ca`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from . import drive as drive_module
from .classroom import Classroom
from .common import Call, Ids
from .discovery import (
    DiscoveryIndex,
    MatchedCall,
    apply_fields,
    parse_fields,
)
from .drive import Drive
from .errors import ApiError, invalid_argument
from .faults import Clock, FaultKind, Faults
from .httpd import LoopbackServer, Request, Response
from .oauth import ENDPOINTS, OAuthState
from .sheets import Sheets, UserQuota
from .tls import generate_tls_material

UPLOAD_SESSION_PATHS = (drive_module.UPLOAD_PATH, "/resumable" + drive_module.UPLOAD_PATH)
DRAIN_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class CallRecord:
    """One request as the server saw it."""

    call_id: str
    http_method: str
    path: str
    status: int
    caller: str | None
    seconds: float


class GoogleTestServer:
    """A local stand-in for Google's OAuth, Classroom, Drive and Sheets APIs.

    Listens on 127.0.0.1 only (ephemeral port by default), HTTP and HTTPS on
    the same port. All control methods are thread-safe.
    """

    def __init__(self, port: int = 0, *, storage_dir: Path | None = None, seed: int | None = None) -> None:
        self._own_storage = storage_dir is None
        self.storage = Path(storage_dir or tempfile.mkdtemp(prefix="google-test-server-"))
        self.storage.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.clock = Clock()
        self.ids = Ids()
        self.tls = generate_tls_material(self.storage)
        self.faults = Faults(self.clock, seed=seed)
        self.index = DiscoveryIndex()
        self.oauth = OAuthState(self.clock, self.tls.key_pem, self.tls.cert_pem, lock=self.lock)
        self.classroom = Classroom(self.oauth, self.clock, self.ids)
        self.drive = Drive(self.clock, self.ids, self.storage, self.lock)
        self.sheets = Sheets(self.ids)
        self.sheets_quota = UserQuota(self.clock)
        self.calls: Counter[str] = Counter()
        self.requests: deque[CallRecord] = deque(maxlen=10_000)
        self.validation_errors: list[str] = []
        self._handlers: dict[str, Callable[[Call], Any]] = {
            **self.classroom.handlers(),
            **self.drive.handlers(),
            **self.sheets.handlers(),
        }
        self._http = LoopbackServer(port, self.dispatch, self.tls.server_context())

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving and delete stored files (when the storage dir was ours)."""
        self._http.stop()
        if self._own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def body_timeout(self) -> float:
        """Seconds a request body may stall before the server drops the connection."""
        return self._http.body_timeout

    @body_timeout.setter
    def body_timeout(self, seconds: float) -> None:
        self._http.body_timeout = seconds

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._http.server_port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — pass as ``client_options={'api_endpoint': url}``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        """``https://127.0.0.1:PORT`` (same port, TLS; trust :attr:`ca_file`)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint."""
        return f"{self.url}/token"

    @property
    def auth_uri(self) -> str:
        """The OAuth authorization (consent) endpoint."""
        return f"{self.url}/o/oauth2/auth"

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the server's TLS certificate."""
        return self.tls.ca_file

    @contextlib.contextmanager
    def trust_ca(self) -> Iterator[None]:
        """Make httplib2 (googleapiclient) and requests trust this server's CA meanwhile."""
        import httplib2

        saved_ca, saved_env = httplib2.CA_CERTS, os.environ.get("REQUESTS_CA_BUNDLE")
        httplib2.CA_CERTS = str(self.ca_file)
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca_file)
        try:
            yield
        finally:
            httplib2.CA_CERTS = saved_ca
            if saved_env is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = saved_env

    # --- OAuth control -----------------------------------------------------------------

    def add_project(self, project_id: str | None = None) -> str:
        """Register a Cloud project; returns its id."""
        return self.oauth.add_project(project_id)

    def add_oauth_client(self, project: str, redirect_uris: list[str] | None = None) -> tuple[str, str]:
        """Register an OAuth client in ``project``; returns (client_id, client_secret).

        ``redirect_uris`` None accepts any redirect URI.
        """
        client = self.oauth.add_client(project, redirect_uris)
        return client.client_id, client.client_secret

    def client_config(self, client_id: str, redirect_uris: list[str] | None = None) -> dict[str, Any]:
        """A ``{"web": …}`` config for ``google_auth_oauthlib.flow.Flow.from_client_config``."""
        client = self.oauth.clients[client_id]
        return {
            "web": {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": list(redirect_uris or client.redirect_uris or []),
            }
        }

    def add_account(self, email: str, name: str | None = None, *, email_verified: bool = True) -> str:
        """Register a Google account; returns its user id (OpenID ``sub``, Classroom userId).

        ``email_verified=False``: Google has not confirmed the address (userinfo says so).
        """
        return self.oauth.add_account(email, name, email_verified=email_verified).user_id

    def issue_refresh_token(self, client_id: str, email: str, scopes: list[str] | tuple[str, ...]) -> str:
        """A refresh token as if ``email`` had authorized ``client_id`` for ``scopes``."""
        return self.oauth.issue_refresh_token(client_id, email, scopes)

    def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token: refreshing answers ``invalid_grant``."""
        if not self.oauth.revoke(token):
            raise KeyError(token)

    def expire_access_tokens(self) -> None:
        """Expire all access tokens; the next API call gets 401 and the client refreshes."""
        self.oauth.expire_access_tokens()

    def auto_approve_as(self, email: str | None) -> None:
        """The account that the consent page approves as (None: show a chooser, no redirect)."""
        with self.lock:
            if email:
                self.oauth.add_account(email)
            self.oauth.consent_account = email

    def deny_consent(self, deny: bool = True) -> None:
        """Make the consent page redirect with ``error=access_denied``."""
        self.oauth.deny_consent = deny

    def user_credentials(self, client_id: str, email: str, scopes: list[str]) -> Any:
        """``google.oauth2.credentials.Credentials`` holding a fresh refresh token."""
        from google.oauth2.credentials import Credentials

        client = self.oauth.clients[client_id]
        refresh_token = self.issue_refresh_token(client_id, email, scopes)
        return Credentials(
            None, refresh_token=refresh_token, client_id=client_id, client_secret=client.client_secret, token_uri=self.token_uri
        )

    def build(self, api: str, credentials: Any, **kwargs: Any) -> Any:
        """``googleapiclient.discovery.build`` pointed at this server (static discovery)."""
        from googleapiclient.discovery import build

        version = {"classroom": "v1", "drive": "v3", "sheets": "v4"}[api]
        return build(
            api,
            version,
            credentials=credentials,
            client_options={"api_endpoint": self.url},
            static_discovery=True,
            cache_discovery=False,
            **kwargs,
        )

    # --- Classroom control -------------------------------------------------------------

    def add_course(self, name: str, *, section: str | None = None, state: str = "ACTIVE") -> str:
        """Create a course; returns its id."""
        with self.lock:
            return self.classroom.add_course(name, section, state)

    def add_student(self, course_id: str, email: str, name: str | None = None) -> str:
        """Enroll a student; returns the userId."""
        with self.lock:
            return self.classroom.add_student(course_id, email, name)

    def add_coursework(
        self,
        course_id: str,
        title: str,
        *,
        created_by_client: str | None = None,
        project: str | None = None,
        max_points: float = 100,
        state: str = "PUBLISHED",
        **fields: Any,
    ) -> str:
        """Create courseWork owned by the project of ``created_by_client`` (or ``project``).

        With neither, it belongs to a project of its own, i.e. "created in the
        Classroom web UI": nobody's API client may grade it.
        """
        with self.lock:
            if created_by_client:
                owner = self.oauth.clients[created_by_client].project_id
            else:
                owner = project or self.add_project(f"classroom-ui-{self.ids.numeric(0)}")
            body = {"title": title, "workType": "ASSIGNMENT", "maxPoints": max_points, "state": state, **fields}
            return self.classroom.add_coursework(course_id, owner, body)

    def coursework(self, course_id: str) -> list[dict[str, Any]]:
        """Every courseWork of a course, with an ``ownerProject`` key added."""
        with self.lock:
            course = self.classroom.courses[course_id]
            return [{**copy.deepcopy(w.resource), "ownerProject": w.project_id} for w in course.coursework.values()]

    def submissions(self, course_id: str, coursework_id: str) -> list[dict[str, Any]]:
        """Copies of the studentSubmissions of one courseWork."""
        with self.lock:
            return copy.deepcopy(list(self.classroom.coursework_record(course_id, coursework_id).submissions.values()))

    def submission_for(self, course_id: str, coursework_id: str, email: str) -> dict[str, Any]:
        """The submission of the student with ``email`` (KeyError if none)."""
        user_id = self.oauth.account(email)
        for submission in self.submissions(course_id, coursework_id):
            if user_id and submission["userId"] == user_id.user_id:
                return submission
        raise KeyError(email)

    def grade_history(self, course_id: str, coursework_id: str) -> list[dict[str, Any]]:
        """Every successful grade patch, in order."""
        with self.lock:
            return copy.deepcopy(self.classroom.coursework_record(course_id, coursework_id).grade_history)

    # --- Drive control -----------------------------------------------------------------

    def add_shared_drive(self, name: str) -> str:
        """Create a Shared Drive; returns its id."""
        return self.drive.add_drive(name)

    def add_drive_file(
        self, name: str, content: bytes | None = None, *, parent: str | None = None, mime_type: str | None = None
    ) -> str:
        """Create a Drive file (or a folder with ``content=None``); returns its id."""
        mime = mime_type or (drive_module.FOLDER if content is None else "application/octet-stream")
        metadata = {"name": name, "mimeType": mime, **({"parents": [parent]} if parent else {})}
        return self.drive.add_file(metadata, content)

    def drive_files(self) -> list[dict[str, Any]]:
        """Copies of every Drive file resource."""
        with self.lock:
            return copy.deepcopy(list(self.drive.files.values()))

    def drive_file(self, file_id: str) -> dict[str, Any]:
        """One Drive file resource (KeyError if missing)."""
        with self.lock:
            return copy.deepcopy(self.drive.files[file_id])

    def drive_content_path(self, file_id: str) -> Path:
        """Where the bytes of an uploaded file are stored."""
        return self.drive.content_path(file_id)

    def expire_upload_sessions(self) -> None:
        """Forget unfinished resumable uploads (the client must start over)."""
        self.drive.expire_sessions()

    # --- Sheets control ----------------------------------------------------------------

    def add_spreadsheet(self, title: str, sheets: list[str] | None = None) -> str:
        """Create a spreadsheet; returns its id."""
        with self.lock:
            return self.sheets.add_spreadsheet(title, sheets)

    def sheet_values(self, spreadsheet_id: str, range_a1: str = "Sheet1") -> list[list[Any]]:
        """Stored (typed) values of a range, trailing blanks trimmed."""
        with self.lock:
            return self.sheets.values(spreadsheet_id, range_a1)

    # --- inspection --------------------------------------------------------------------

    def call_count(self, pattern: str = "*") -> int:
        """How many calls matched a method id, API name or glob (faults' matching rules)."""
        from .faults import Fault

        probe = Fault(pattern, FaultKind.DROP)
        with self.lock:
            return sum(n for call_id, n in self.calls.items() if probe.matches(call_id))

    def reset_calls(self) -> None:
        """Forget call counts and the request log."""
        with self.lock:
            self.calls.clear()
            self.requests.clear()

    # --- dispatch ----------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        """Answer one HTTP request (called on the connection's thread)."""
        started = time.monotonic()
        call_id, run = self._route(request)
        with self.lock:
            self.calls[call_id] += 1
        response = self._with_faults(call_id, request, run)
        with self.lock:
            self.requests.append(
                CallRecord(
                    call_id,
                    request.method,
                    request.raw_path,
                    0 if response.drop else response.status,
                    request.caller,
                    time.monotonic() - started,
                )
            )
        return response

    def _route(self, request: Request) -> tuple[str, Callable[[], Response]]:
        if request.raw_path in ENDPOINTS:
            call_id = ENDPOINTS[request.raw_path]
            return call_id, lambda: self.oauth.handle(call_id, request)
        query = urllib.parse.parse_qs(request.raw_query)
        if request.method == "PUT" and request.raw_path in UPLOAD_SESSION_PATHS and "upload_id" in query:
            return "drive.upload.chunk", lambda: self._upload_chunk(request, query["upload_id"][0])
        try:
            matched = self.index.resolve(request.method, request.raw_path, request.raw_query)
        except ApiError as error:
            self._note(f"no discovery method for {request.method} {request.raw_path}?{request.raw_query}: {error}")
            failure = error
            return "unknown", lambda: _error_response(failure, request)
        return matched.method_id, lambda: self._api_call(request, matched)

    def _with_faults(self, call_id: str, request: Request, run: Callable[[], Response]) -> Response:
        fault = self.faults.decide(call_id).fault
        if fault is None:
            return _guard(run, request)
        if fault.kind is FaultKind.DROP:
            return Response.dropped()
        if fault.kind is FaultKind.DELAY:
            time.sleep(fault.delay)
            return _guard(run, request)
        if fault.kind is FaultKind.DROP_AFTER:
            _guard(run, request)
            return Response.dropped()
        return _error_response(fault.error(call_id.split(".")[0]), request)

    def _api_call(self, request: Request, matched: MatchedCall) -> Response:
        api, method = matched.api, matched.route.method
        identity = self.oauth.authenticate(request, api)
        self.oauth.require_scopes(identity, method.get("scopes", []), api)
        if api == "sheets":
            self.sheets_quota.charge(identity.email, matched.method_id)
        request.caller = identity.email
        self._check_selector(matched)
        call = Call(request, matched, identity, self._request_body(request, matched))
        handler = self._handlers.get(matched.method_id)
        if handler is None:
            self._note(f"{matched.method_id} is not implemented by the test server")
            raise ApiError(501, f"{matched.method_id} is not implemented by the test server", "UNIMPLEMENTED")
        if Drive.streams(call):
            result = handler(call)
        else:
            with self.lock:
                result = handler(call)
        if isinstance(result, Response):
            return result
        return self._json_response(matched, result)

    def _request_body(self, request: Request, matched: MatchedCall) -> Any:
        schema = matched.route.method.get("request")
        if matched.route.is_upload and matched.query.get("uploadType") != "resumable":
            return None  # the handler reads the media itself
        if schema is None:
            request.drain()
            return None
        try:
            body = request.json()
        except ValueError as error:
            raise invalid_argument(matched.api, f"Invalid JSON payload received. {error}") from None
        if body is None:
            return None
        problems = self.index.checkers[matched.api].check(body, schema["$ref"], matched.method_id)
        if problems:
            raise invalid_argument(matched.api, "Invalid JSON payload received. " + "; ".join(problems))
        return body

    def _check_selector(self, matched: MatchedCall) -> None:
        selector, schema = matched.query.get("fields"), matched.route.method.get("response")
        if not selector or not schema:
            return
        try:
            problems = self.index.checkers[matched.api].selector_problems(parse_fields(selector), schema["$ref"])
        except ValueError as error:
            raise invalid_argument(matched.api, str(error)) from None
        if problems:
            raise invalid_argument(matched.api, f"Invalid field selection {problems[0]}")

    def _json_response(self, matched: MatchedCall, result: Any) -> Response:
        schema = matched.route.method.get("response")
        if schema:
            problems = self.index.checkers[matched.api].check(result, schema["$ref"])
            for problem in problems:
                self._note(f"{matched.method_id} response: {problem}")
        selector = matched.query.get("fields") or drive_module.DEFAULT_FIELDS.get(matched.method_id)
        if selector:
            result = apply_fields(result, parse_fields(selector))
        return Response(200, result)

    def _upload_chunk(self, request: Request, upload_id: str) -> Response:
        outcome, fields = self.drive.upload_chunk(request, upload_id)
        if isinstance(outcome, Response):
            return outcome
        with self.lock:
            resource = copy.deepcopy(self.drive.files.get(outcome.file_id or "", {}))
        selector = fields or drive_module.DEFAULT_FIELDS["drive.files.create"]
        return Response(200, apply_fields(resource, parse_fields(selector)))

    def _note(self, problem: str) -> None:
        with self.lock:
            self.validation_errors.append(problem)


def _guard(run: Callable[[], Response], request: Request) -> Response:
    try:
        return run()
    except ApiError as error:
        return _error_response(error, request)


def _error_response(error: ApiError, request: Request) -> Response:
    if request.content_length - request.consumed <= DRAIN_LIMIT:
        with contextlib.suppress(ConnectionError, OSError):
            request.drain()
    return Response(error.code, error.body(), headers=dict(error.headers))


__all__ = ["CallRecord", "GoogleTestServer"]
