"""A reply sender that ends gives its partition back, so the sender started next can serve it."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask

from app.db import db
from app.loop import StopFlag
from app.settings import Settings
from app.zulip.delivery import ReplyDelivery


def _claim_within(settings: Settings, seconds: float) -> bool:
    stop = StopFlag()
    timer = threading.Timer(seconds, stop.stop)
    timer.start()
    delivery = ReplyDelivery(Any, settings, partition=0, partitions=2)  # type: ignore[arg-type]
    try:
        return delivery.claim_partition(stop)
    finally:
        timer.cancel()
        delivery.close()


def test_a_closed_sender_gives_its_partition_back_even_though_its_connection_stays_pooled(
        app: Flask, settings: Settings) -> None:
    first = ReplyDelivery(Any, settings, partition=0, partitions=2)  # type: ignore[arg-type]
    assert first.claim_partition(StopFlag())
    first.close()
    # The session-level advisory lock outlives a checkout: take the pooled connection the first
    # sender returned (the pool hands out the most recent first), so the next claim opens another.
    pooled = [db.engine.connect() for _ in range(2)]
    try:
        assert _claim_within(settings, 3.0), "the partition is still held by a connection in the pool"
    finally:
        for connection in pooled:
            connection.close()


def test_a_sender_whose_database_session_was_killed_gives_its_partition_back(app: Flask, settings: Settings) -> None:
    first = ReplyDelivery(Any, settings, partition=0, partitions=2)  # type: ignore[arg-type]
    assert first.claim_partition(StopFlag())
    assert first._lock_connection is not None
    pid = first._lock_connection.scalar(db.text("SELECT pg_backend_pid()"))
    with db.engine.connect() as admin:
        admin.execute(db.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    first.close()  # the unlock fails on the dead session: the connection is dropped, not pooled
    assert _claim_within(settings, 3.0)
