"""Benchmark-sized fault injection of the whole Zulip path: exactly once, in order, through random faults.

Runs ``tests/zulip/test_fault_injection.py`` (receiver and poller as real processes, the core,
the Zulip test server) with a bigger setting than ``make test`` uses, and prints its numbers:
messages, answers, doubles, students out of order, SIGKILLs, queue expiries, key rotations,
injected faults and the time to drain after the chaos.

Run: ``make bench`` or ``.venv/bin/python -m bench.zulip_faults [--students 40] [--messages 15] [--seconds 120]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from app.settings import PROJECT_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--messages", type=int, default=15, help="messages per student")
    parser.add_argument("--seconds", type=int, default=120, help="seconds of chaos")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    env = dict(os.environ, LESSONBOT_FAULT_STUDENTS=str(args.students), LESSONBOT_FAULT_MESSAGES=str(args.messages),
               LESSONBOT_FAULT_SECONDS=str(args.seconds))
    if args.seed is not None:
        env["LESSONBOT_FAULT_SEED"] = str(args.seed)
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
               "tests/zulip/test_fault_injection.py"]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
