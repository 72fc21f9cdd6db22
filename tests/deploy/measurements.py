"""Numbers the deploy test measures, printed in pytest's terminal summary
(tests/deploy/conftest.py) and written to the test state directory."""

from __future__ import annotations

MEASUREMENTS: dict[str, object] = {}
