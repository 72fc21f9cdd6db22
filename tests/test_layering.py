"""The tree holds one worker loop, one advisory-lock wait and one back-off: app/loop.py.

The import contracts (pyproject.toml, ``lint-imports`` in ``make lint``) say which package
may import which; this says what no module but the loop module writes for itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
LOOP = APP / "loop.py"
SOURCES = sorted(path for path in APP.rglob("*.py") if path != LOOP)

ADVISORY_LOCK = re.compile(r"pg_(try_)?advisory_(xact_)?(un)?lock")
BACKOFF = re.compile(r"\b2(\.0)?\s*\*\*\s*[A-Za-z_(]|\bwait_exponential|\brandom\.uniform\(|\bexpovariate\(")


def _found(pattern: re.Pattern[str]) -> list[str]:
    return [f"{path.relative_to(APP.parent)}:{number}: {line.strip()}"
            for path in SOURCES for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]


def _loops_calling_run_once(path: Path) -> list[str]:
    """``while`` loops whose body calls ``run_once()``: a worker loop of its own."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.While):
            continue
        calls = [call for statement in node.body for call in ast.walk(statement) if isinstance(call, ast.Call)]
        if any(isinstance(call.func, ast.Attribute | ast.Name) and getattr(call.func, "attr", getattr(call.func, "id", ""))
               == "run_once" for call in calls):
            found.append(f"{path.relative_to(APP.parent)}:{node.lineno}")
    return found


def test_only_the_loop_module_takes_advisory_locks() -> None:
    assert _found(ADVISORY_LOCK) == [], "use app.loop.try_advisory_lock / wait_for_advisory_lock"


def test_only_the_loop_module_computes_a_back_off() -> None:
    assert _found(BACKOFF) == [], "use app.loop.backoff"


def test_only_the_loop_module_loops_over_run_once() -> None:
    assert [where for path in SOURCES for where in _loops_calling_run_once(path)] == [], "use app.loop.run_forever"


@pytest.mark.parametrize("needle", ["pg_try_advisory_lock", "wait_exponential_jitter", "def run_forever"])
def test_the_loop_module_holds_them(needle: str) -> None:
    assert needle in LOOP.read_text()


def _module_level_test_imports(path: Path) -> list[str]:
    """Imports of tests.* that run when the module is imported (not inside a function or `if TYPE_CHECKING:`)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                break
            names = ([alias.name for alias in child.names] if isinstance(child, ast.Import)
                     else [child.module or ""] if isinstance(child, ast.ImportFrom) else [])
            if any(name == "tests" or name.startswith("tests.") for name in names):
                found.append(f"{path.relative_to(APP.parent)}:{child.lineno}")
    return found


def test_the_app_imports_the_test_servers_only_when_a_lesson_test_runs() -> None:
    """`lessons test` starts tests/' servers lazily: an installation without tests/ still imports every module."""
    assert [where for path in [LOOP, *SOURCES] for where in _module_level_test_imports(path)] == []
