"""A pytest plugin: no test reads files beside the repository.

A plain clone has nothing beside it (no ``../shared``), so a test that reads from there
passes on a developer's machine and fails everywhere else. Every ``open`` and directory
listing in the test process is checked by an audit hook (PEP 578); one that reaches into
the repository's parent folder but outside the repository fails with a sentence saying so.
Subprocesses are not covered; ``.ci/run`` covers them by running the suite from a copy of
the checkout in an empty temporary folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[1])
PARENT = os.path.dirname(ROOT)
WATCHED_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class OutsideRepository(PermissionError):
    """A test read a file beside the repository."""


def outside_repository(path: Any) -> str | None:
    """The absolute path if it lies beside the repository (in its parent folder, not in it), else None."""
    if not isinstance(path, str | bytes | os.PathLike):
        return None  # a file descriptor
    text = os.fsdecode(path)
    absolute = os.path.normpath(os.path.join(os.getcwd(), text)) if not text.startswith("/") else os.path.normpath(text)
    if absolute.startswith(PARENT + os.sep) and not (absolute == ROOT or absolute.startswith(ROOT + os.sep)):
        return absolute
    return None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in WATCHED_EVENTS and args:
        path = outside_repository(args[0])
        if path is not None:
            raise OutsideRepository(f"a test read {path}, which is outside the repository; "
                                    "keep what the tests need inside it (a plain clone has nothing beside it)")


def pytest_configure(config: Any) -> None:
    # At the top of a file system (a clone in /x) the whole disk is "beside" it: nothing to watch.
    if os.sep != PARENT:
        sys.addaudithook(_audit)
