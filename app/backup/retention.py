"""Which backups to keep: the newest of each of the last N days, weeks and months.

The rule is restic's ``--keep-daily/--keep-weekly/--keep-monthly``: walking from the newest
backup back, a backup is kept when it is the newest one of a day (ISO week, month) not yet
counted, until each count is used up. Days without a backup do not count, so a server that
was off for a week still keeps seven backups, not none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

Bucket = Callable[[datetime], tuple[int, ...]]
BUCKETS: dict[str, Bucket] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}


def to_keep(backups: Mapping[str, datetime], now: datetime, *, daily: int, weekly: int, monthly: int) -> set[str]:
    """The names to keep; a backup newer than ``now`` (a clock step) is always kept and counts for nothing."""
    limits = {"daily": daily, "weekly": weekly, "monthly": monthly}
    keep = {name for name, created in backups.items() if created > now}
    newest_first = sorted(((n, c) for n, c in backups.items() if c <= now), key=lambda item: item[1], reverse=True)
    for kind, limit in limits.items():
        seen: set[tuple[int, ...]] = set()
        for name, created in newest_first:
            bucket = BUCKETS[kind](created)
            if len(seen) >= limit:
                break
            if bucket not in seen:
                seen.add(bucket)
                keep.add(name)
    return keep
