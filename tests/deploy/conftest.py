"""Print the deploy test's measurements at the end of the run, pass or fail."""

from __future__ import annotations

import json

import pytest

from tests.deploy import machine
from tests.deploy.measurements import MEASUREMENTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("deploy test measurements")
    for name, value in MEASUREMENTS.items():
        terminalreporter.write_line(f"{name}: {value}")
    machine.STATE_DIR.mkdir(parents=True, exist_ok=True)
    (machine.STATE_DIR / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2))
