"""The deploy tests refuse to run beside `make vm`'s machine; their measurements are printed at the end."""

from __future__ import annotations

import json

import pytest

from tests.deploy import machine
from tests.deploy.measurements import MEASUREMENTS


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One clear line instead of a torn-down `make vm` machine: both use the same names and addresses."""
    if machine.vm_is_up() and any(item.get_closest_marker("deploy") for item in items):
        pytest.exit(machine.VM_BUSY, returncode=1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("deploy test measurements")
    for name, value in MEASUREMENTS.items():
        terminalreporter.write_line(f"{name}: {value}")
    machine.STATE_DIR.mkdir(parents=True, exist_ok=True)
    (machine.STATE_DIR / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2))
