"""A local Google API server (OAuth, Classroom v1, Drive v3, Sheets v4) for tests.

The official ``google-api-python-client`` and ``google-auth`` talk to it
unchanged; see :class:`GoogleTestServer` for the control API.
"""

from .discovery import SchemaChecker, load_document
from .errors import ApiError
from .faults import Fault, FaultKind
from .server import CallRecord, GoogleTestServer

__all__ = ["ApiError", "CallRecord", "Fault", "FaultKind", "GoogleTestServer", "SchemaChecker", "load_document"]
