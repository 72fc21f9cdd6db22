"""The registry of check types and what a check returns.

Each platform registers its checks (``git.*`` in ``app.git.checks``, ``answer`` in
``app.lessons.answer``) with :func:`check_type`; lesson validation and the engine
find them here.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.i18n import Text
from app.metrics.registry import STEP_CHECK_DURATION, STEP_CHECKS

log = logging.getLogger(__name__)

PLATFORM_MODULES = ("app.lessons.answer", "app.git.checks", "app.zulip.checks", "app.github.checks")


class CheckParams(BaseModel):
    """Base of every check's parameters: unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class CheckResult:
    status: Literal["passed", "not_yet", "error"]
    reason: Text | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


PASSED = CheckResult("passed")


def not_yet(key: str, **params: Any) -> CheckResult:
    return CheckResult("not_yet", Text(key, **params))


def check_error(key: str, **params: Any) -> CheckResult:
    return CheckResult("error", Text(key, **params))


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at: the run's platform data and, for questions, the answer."""

    run_context: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None


CheckFunction = Callable[[Any, CheckContext], CheckResult]


@dataclass(frozen=True)
class CheckType:
    name: str
    params: type[CheckParams]
    run: CheckFunction
    needs_answer: bool = False

    @property
    def platform(self) -> str:
        return self.name.split(".", 1)[0]


_REGISTRY: dict[str, CheckType] = {}


def check_type(name: str, params: type[CheckParams], *, needs_answer: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under ``name`` (``platform.what``)."""

    def register(function: CheckFunction) -> CheckFunction:
        _REGISTRY[name] = CheckType(name, params, function, needs_answer)
        return function

    return register


@functools.cache
def _load_platforms() -> None:
    for module in PLATFORM_MODULES:
        importlib.import_module(module)


def check_types() -> dict[str, CheckType]:
    _load_platforms()
    return _REGISTRY


def platforms() -> set[str]:
    return {kind.platform for kind in check_types().values() if not kind.needs_answer}


def run_check(name: str, params: CheckParams, context: CheckContext) -> CheckResult:
    """Run one check, counted and timed by platform; an unexpected exception becomes an error result, logged."""
    platform = name.split(".", 1)[0]
    started = time.perf_counter()
    try:
        result = check_types()[name].run(params, context)
    except Exception:
        log.exception("check %s crashed", name, extra={"check": name, "run_context": context.run_context})
        result = check_error("check.crashed")
    STEP_CHECK_DURATION.labels(platform).observe(time.perf_counter() - started)
    STEP_CHECKS.labels(platform, result.status).inc()
    return result
