"""The Zulip receiver: every direct message or mention to the bot reaches the core exactly once, in order.

It registers an event queue, long-polls it, and hands what one long-poll brought to the
core's ``/internal/messages/batch`` in one request (one transaction there; a long-poll that
brought more than one batch goes in lanes, each sender's messages in one); a message the
core could not take in its batch goes again on its own through ``/internal/messages``.
The id of the last message handed over is kept in PostgreSQL: at start and after the
queue expires it registers anew, then backfills with ``GET /messages`` from that id
before draining the queue, dropping repeats by id. The core is idempotent by message id
too, so a crash between handing over and saving the id repeats nothing.

Every reply the bot sends comes back to its own queue. A long-poll that brought only such
messages saves its progress at most every PROGRESS_EVERY seconds (after a crash the
backfill reads them again and drops them again), and the next long-poll waits ECHO_SETTLE
first, so that one poll brings several instead of one poll per reply.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.engine import Connection

from app.db import db, is_postgresql, upsert_insert, utcnow
from app.loop import StopFlag, backoff, wait_for_advisory_lock
from app.zulip.api import BadEventQueue, RateLimited, Stopping, ZulipApi, ZulipError
from app.zulip.deadletters import dead_letter
from app.zulip.models import ReceiverState

log = logging.getLogger(__name__)
LOCK_CLASS = 7302  # pg advisory lock namespace: one receiver per bot
BACKFILL_PAGE = 200
BOT_LIST_MAX_AGE = 600.0
PARALLEL_SENDERS = 8  # students whose messages are handed to the core one by one at the same time
HANDOVER_LANES = 4  # batches handed to the core at the same time when a long-poll brings more than one batch
CORE_MAX_ATTEMPTS = 5  # error answers from the core before a message is set aside as a dead letter
BATCH_MESSAGES = 50  # the core's limit per batch (app/chat/service.py MAX_BATCH)
BATCH_BYTES = 192 * 1024  # below the core's default request limit (256 KiB), whatever the texts hold
DM_FEATURE_LEVEL = 177  # Zulip 7.0: the `dm` operator and `is:dm`
# A long-poll that brought nothing to hand over (the bot's own replies, which wake its queue too) saves
# its progress at most this often, and the next long-poll waits a moment so that it brings several.
PROGRESS_EVERY = 10.0
ECHO_SETTLE = 0.05


class CoreRejected(Exception):
    """The core refused a message for good (4xx): retrying cannot help."""


class CoreFailed(Exception):
    """The core failed while handling this message (HTTP 500): it may be the message; retried a few times."""


UNAVAILABLE = (502, 503, 504)  # nginx or uWSGI without a core behind: not the message's fault
NOT_THE_MESSAGE = (401, 403, 404, 408, 429)  # a wrong token or URL, a timeout, a limit: retried, never dead letters


class CoreClient:
    """Hands messages to the core's /internal/messages."""

    def __init__(self, core_url: str, token: str) -> None:
        self.url = core_url.rstrip("/") + "/internal/messages"
        self.token = token
        self.local = threading.local()

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            # The core is on this machine and answers loopback only: no proxy from the environment may carry
            # the hand-over (and requests would read the whole environment again for every request).
            session.trust_env = False
            session.headers["Authorization"] = f"Bearer {self.token}"
            self.local.session = session
        return session

    def deliver(self, message: dict[str, Any]) -> None:
        self._check(self.session.post(self.url, json=handover_body(message), timeout=30))

    def deliver_batch(self, bodies: list[dict[str, Any]]) -> list[str]:
        """Hand over a batch (bodies from ``handover_body``); each message's status, in order."""
        data = json.dumps({"messages": bodies}, ensure_ascii=False).encode()
        response = self.session.post(self.url + "/batch", data=data, timeout=60,
                                     headers={"Content-Type": "application/json"})
        self._check(response)
        statuses = [str(result.get("status")) for result in response.json().get("results", [])]
        if len(statuses) != len(bodies):
            raise CoreFailed(f"the core answered {len(statuses)} results for {len(bodies)} messages")
        return statuses

    @staticmethod
    def _check(response: requests.Response) -> None:
        """Nothing if the core took it; else the exception that says whose fault it is."""
        if response.status_code == 200:
            return
        if 400 <= response.status_code < 500 and response.status_code not in NOT_THE_MESSAGE:
            raise CoreRejected(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 500 and response.status_code not in UNAVAILABLE:
            raise CoreFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        response.raise_for_status()
        raise requests.HTTPError(f"unexpected HTTP {response.status_code}")


def handover_body(message: dict[str, Any]) -> dict[str, Any]:
    """A Zulip message as the core takes it."""
    return {"message_id": f"zulip:{message['id']}", "sender_email": message["sender_email"],
            "sender_full_name": message.get("sender_full_name", ""), "sender_id": message.get("sender_id"),
            "content": message.get("content", "")}


def batches(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive runs of at most BATCH_MESSAGES messages and about BATCH_BYTES of JSON (a larger message goes alone)."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for message in messages:
        length = len(json.dumps(handover_body(message), ensure_ascii=False).encode())
        if not chunks or len(chunks[-1]) >= BATCH_MESSAGES or size + length > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += length
    return chunks


def by_sender(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each sender's messages (by Zulip id, else email), in the order given."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for message in messages:
        sender_id = message.get("sender_id")
        groups.setdefault(sender_id if sender_id is not None else message.get("sender_email"), []).append(message)
    return list(groups.values())


def lanes(messages: list[dict[str, Any]], count: int = HANDOVER_LANES) -> list[list[dict[str, Any]]]:
    """What is more than one batch, split into at most ``count`` lanes that can go to the core at the same time.

    Each sender's messages stay together in one lane, oldest first, so that a student's
    messages still reach the core in order; the lanes are balanced by their number of
    messages. What fits one batch stays one lane: one request, one transaction.
    """
    if len(messages) <= BATCH_MESSAGES:
        return [messages] if messages else []
    groups = by_sender(messages)
    split: list[list[dict[str, Any]]] = [[] for _ in range(min(count, len(groups)))]
    for group in sorted(groups, key=len, reverse=True):
        min(split, key=len).extend(group)
    return [sorted(lane, key=lambda message: int(message["id"])) for lane in split]


def wants(message: dict[str, Any], flags: list[str], bot_email: str, bot_ids: set[int]) -> bool:
    """Direct messages and mentions from people; never our own messages or other bots'."""
    if message.get("sender_email") == bot_email or message.get("sender_id") in bot_ids:
        return False
    if message.get("type") == "stream":
        return "mentioned" in flags
    return True


@dataclass
class Receiver:
    api: ZulipApi                 # calls from the main thread
    poll_api: ZulipApi            # the long-poll, from its own thread
    core: CoreClient
    stop: StopFlag
    last_id: int | None = None
    queue_id: str | None = None
    last_event_id: int = -1
    longpoll_seconds: float = 90.0
    bot_ids: set[int] = field(default_factory=set)
    bots_loaded_at: float = float("-inf")  # never (time.monotonic() may be small: it counts from boot)
    errors: int = 0
    default_language: str = "ru"
    last_error: str | None = None
    _dead_letter_lock: threading.Lock = field(default_factory=threading.Lock)
    _lock_connection: Connection | None = None
    pool: ThreadPoolExecutor | None = None
    lane_pool: ThreadPoolExecutor | None = None
    progress_saved_at: float = float("-inf")  # time.monotonic() of the last save

    @property
    def bot_email(self) -> str:
        return self.api.email

    # ---- one active receiver per bot ---------------------------------------------------

    def wait_for_lock(self) -> bool:
        """Hold the bot's advisory lock for the life of the process; wait while another has it."""
        if not is_postgresql():
            return True
        key = zlib.crc32(self.bot_email.encode()) & 0x7FFFFFFF
        self._lock_connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return wait_for_advisory_lock(self._lock_connection, (LOCK_CLASS, key), self.stop, f"receiver for {self.bot_email}")

    # ---- progress ----------------------------------------------------------------------

    def load_progress(self) -> None:
        state = db.session.get(ReceiverState, self.bot_email)
        self.last_id = state.last_message_id if state else None
        db.session.rollback()

    def save_progress(self, message_id: int) -> None:
        self.last_id = message_id
        db.session.execute(_save_progress_statement(db.engine.dialect.name),
                           {"bot_email": self.bot_email, "last_message_id": message_id, "updated_at": utcnow()})
        db.session.commit()
        self.progress_saved_at = time.monotonic()

    # ---- the loop ----------------------------------------------------------------------

    def run_once(self) -> bool:
        """Register if needed, then one long-poll; True if messages were handed over."""
        try:
            if self.queue_id is None:
                self.register_and_backfill()
            events = self.poll()
            try:
                handled = self.drain(events)
            except Stopping:
                raise  # the queue stays ours, so that close() deletes it; the next start backfills anyway
            except BaseException:
                # The next long-poll would acknowledge these events, and Zulip would forget them: a new queue and
                # the backfill from the last id handed over bring back what did not reach the core.
                self.queue_id = None
                raise
            if events and not handled:
                self.stop.event.wait(ECHO_SETTLE)
            self.errors = 0
            self.report(None)
            return handled > 0
        except BadEventQueue:
            log.info("event queue %s expired; registering again and backfilling", self.queue_id)
            self.queue_id = None
            return False
        except Stopping:
            return False
        except RateLimited as error:
            # The server said how long to wait: no sooner (and every other caller waits as long, via the budget).
            log.warning("receiver: Zulip rate limit; waiting %.1f s as the server asked", error.retry_after)
            self.report(str(error))
            self.stop.event.wait(error.retry_after)
            return False
        except (ZulipError, requests.RequestException, CoreRejected, CoreFailed, OSError) as error:
            self.errors += 1
            delay = backoff(self.errors, initial=0.5, maximum=60)
            log.warning("receiver: %s; retrying in %.1f s", error, delay)
            self.report(str(error))
            self.stop.event.wait(delay)
            return False

    def report(self, error: str | None) -> None:
        """Remember what the receiver is stuck on (None: nothing); the worker shows it in its heartbeat."""
        self.last_error = error

    def register_and_backfill(self) -> None:
        """A new queue first, then everything since the last handed-over id: no gap between them.

        The queue is adopted only once the backfill is complete: if any call fails, the
        next pass registers again and backfills from the same id, so nothing is skipped.
        """
        result = self.api.call("register", "POST", {"event_types": json.dumps(["message"]), "apply_markdown": "false",
                                                    "client_gravatar": "true"})
        if self.last_id is None:
            # First start ever: begin from now rather than the bot's whole history; "now" is the first
            # queue's, so what comes while the rest of the start-up is retried is backfilled.
            self.save_progress(int(result.get("max_message_id", 0)))
        self.refresh_bots(force=True)
        self.handle_batch([(message, message.get("flags", [])) for message in self.missed_messages()])
        self.queue_id, self.last_event_id = result["queue_id"], int(result["last_event_id"])
        self.longpoll_seconds = float(result.get("event_queue_longpoll_timeout_seconds") or 90)

    def backfill_narrows(self) -> list[list[dict[str, str]]]:
        """Direct messages and mentions, in the words this server understands (``is:dm`` came with feature level 177)."""
        direct = "dm" if self.api.feature_level >= DM_FEATURE_LEVEL else "private"
        return [[{"operator": "is", "operand": direct}], [{"operator": "is", "operand": "mentioned"}]]

    def missed_messages(self) -> list[dict[str, Any]]:
        """Direct messages and mentions after the last handed-over id, oldest first."""
        assert self.last_id is not None
        found: dict[int, dict[str, Any]] = {}
        for narrow in self.backfill_narrows():
            anchor = self.last_id
            while True:
                page = self.api.call("messages", "GET", {
                    "anchor": anchor, "include_anchor": "false", "num_before": 0, "num_after": BACKFILL_PAGE,
                    "narrow": json.dumps(narrow), "apply_markdown": "false"})
                messages = page.get("messages", [])
                found.update({int(message["id"]): message for message in messages})
                if page.get("found_newest", True) or not messages:
                    break
                anchor = int(messages[-1]["id"])
        if found:
            log.info("backfill: %d message(s) after id %s", len(found), self.last_id)
        return [found[key] for key in sorted(found)]

    def poll(self) -> list[dict[str, Any]]:
        """One long-poll, in a helper thread so that SIGTERM is answered at once."""
        results: queue.Queue[Any] = queue.Queue(maxsize=1)
        params = {"queue_id": self.queue_id, "last_event_id": self.last_event_id}

        def long_poll() -> None:
            try:
                results.put(self.poll_api.call("events", "GET", params, timeout=self.longpoll_seconds + 15))
            except Exception as error:  # handed to the main thread
                results.put(error)

        threading.Thread(target=long_poll, name="zulip-longpoll", daemon=True).start()
        while not self.stop.stopping:
            try:
                outcome = results.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(outcome, Exception):
                raise outcome
            return list(outcome.get("events", []))
        raise Stopping()

    def drain(self, events: list[dict[str, Any]]) -> int:
        batch = []
        for event in events:
            self.last_event_id = max(self.last_event_id, int(event["id"]))
            if event.get("type") == "message":
                batch.append((event["message"], event.get("flags", [])))
        return self.handle_batch(batch)

    def handle_batch(self, batch: list[tuple[dict[str, Any], list[str]]]) -> int:
        """Hand over the new, wanted messages of a batch; the number handed over.

        They go to the core in batches (one request and one transaction each), oldest first;
        more than one batch's worth is split into lanes by sender (``lanes``), handed over at
        the same time, so that a big backlog does not wait for one commit after another. What
        the core could not take in a batch goes again one by one, each sender's in order,
        before the lane's next batch. Progress is saved once the whole batch is in: after a crash the
        batch is handed over again, and the core drops what it has seen.
        """
        fresh = [(message, flags) for message, flags in batch if self.last_id is None or int(message["id"]) > self.last_id]
        if not fresh:
            return 0
        if any(message.get("sender_id") not in self.bot_ids for message, _ in fresh):
            self.refresh_bots()
        wanted = [message for message, flags in sorted(fresh, key=lambda item: int(item[0]["id"]))
                  if wants(message, flags, self.bot_email, self.bot_ids)]
        started = time.monotonic()
        self._deliver_lanes(lanes(wanted))
        newest = max(int(message["id"]) for message, _ in fresh)
        if wanted or time.monotonic() - self.progress_saved_at >= PROGRESS_EVERY:
            self.save_progress(newest)
        else:  # only messages not for us: after a crash the backfill reads them again and drops them again
            self.last_id = newest
        if wanted:
            log.info("handed over %d message(s) in %.3f s", len(wanted), time.monotonic() - started)
        return len(wanted)

    def _deliver_lanes(self, split: list[list[dict[str, Any]]]) -> None:
        """Each lane's batches in order; the lanes at the same time. Returns once every lane is done, raising
        the first lane's error if any failed (the others have finished by then: nothing is left half-sent)."""
        if len(split) <= 1:
            for lane in split:
                self._deliver_lane(lane)
            return
        if self.lane_pool is None:
            self.lane_pool = ThreadPoolExecutor(max_workers=HANDOVER_LANES, thread_name_prefix="lane")
        app = current_app._get_current_object()  # type: ignore[attr-defined]  # dead letters need it in the lane
        futures = [self.lane_pool.submit(self._in_app, app, self._deliver_lane, lane) for lane in split]
        wait(futures)
        for future in futures:
            future.result()

    def _deliver_lane(self, messages: list[dict[str, Any]]) -> None:
        for chunk in batches(messages):
            self._deliver_batch(chunk)

    def _deliver_batch(self, messages: list[dict[str, Any]]) -> None:
        """One batch to the core. While the core is unreachable, the batch waits and goes again; if the
        batch as a whole fails, or some of its messages did, those go one by one (the dead-letter path)."""
        attempt = 0
        while True:
            try:
                statuses = self.core.deliver_batch([handover_body(message) for message in messages])
                break
            except (CoreFailed, CoreRejected) as error:
                log.warning("the core could not take a batch of %d (%s); handing them over one by one", len(messages), error)
                self._deliver_one_by_one(messages)
                return
            except requests.RequestException as error:
                attempt += 1
                self._wait_before_retry(messages[0], error, attempt)
        left = [message for message, status in zip(messages, statuses, strict=True) if status in ("failed", "deferred")]
        if left:
            self._deliver_one_by_one(left)

    def _deliver_one_by_one(self, messages: list[dict[str, Any]]) -> None:
        """Each sender's messages one after another, in order; different senders in parallel."""
        groups = by_sender(messages)
        if len(groups) > 1:
            app = current_app._get_current_object()  # type: ignore[attr-defined]  # dead letters need it in the pool
            list(self._pool().map(lambda group: self._in_app(app, self._deliver_in_order, group), groups))
        elif groups:
            self._deliver_in_order(groups[0])

    def _pool(self) -> ThreadPoolExecutor:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=PARALLEL_SENDERS, thread_name_prefix="handover")
        return self.pool

    @staticmethod
    def _in_app(app: Flask, work: Callable[[list[dict[str, Any]]], None], messages: list[dict[str, Any]]) -> None:
        with app.app_context():
            work(messages)

    def _deliver_in_order(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self._deliver_until_taken(message)

    def _deliver_until_taken(self, message: dict[str, Any]) -> None:
        """Hand one message to the core; a message the core keeps failing on goes to the dead letters.

        While the core cannot be reached (no connection, 502/503/504 from the proxy) it is down,
        not the message: that is retried without limit. A failure while handling it (500) is
        retried ``CORE_MAX_ATTEMPTS`` times, a refusal (4xx) not at all; then the message is
        set aside so the students behind it move on.
        """
        attempt = unavailable = 0
        while True:
            try:
                self.core.deliver(message)
                return
            except CoreRejected as error:
                self._set_aside(message, f"core refused it: {error}", attempt + 1)
                return
            except CoreFailed as error:
                attempt += 1
                if attempt >= CORE_MAX_ATTEMPTS:
                    self._set_aside(message, f"core failed {attempt} times: {error}", attempt)
                    return
                self._wait_before_retry(message, error, attempt)
            except requests.RequestException as error:
                unavailable += 1
                self._wait_before_retry(message, error, unavailable)

    def _wait_before_retry(self, message: dict[str, Any], error: Exception, attempt: int) -> None:
        delay = backoff(attempt, initial=0.2, maximum=30, jitter=0.5)
        log.warning("core could not take message %s (%s); retrying in %.1f s", message["id"], error, delay)
        if self.stop.event.wait(delay):
            raise Stopping() from error

    def _set_aside(self, message: dict[str, Any], reason: str, attempts: int) -> None:
        with self._dead_letter_lock:
            try:
                dead_letter(message, reason[:1000], attempts, self.default_language)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
        log.error("message %s from %s set aside as a dead letter after %d attempt(s): %s",
                  message["id"], message.get("sender_email"), attempts, reason[:300])

    def refresh_bots(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.bots_loaded_at < BOT_LIST_MAX_AGE:
            return
        members = self.api.call("users", "GET").get("members", [])
        self.bot_ids = {int(member["user_id"]) for member in members if member.get("is_bot")}
        self.bots_loaded_at = time.monotonic()

    def close(self) -> None:
        if self.queue_id is not None:
            try:
                self.api.call("events", "DELETE", {"queue_id": self.queue_id}, timeout=5, final=True)
            except Exception as error:  # best effort: the queue expires on its own
                log.info("could not delete event queue: %s", error)
        if self._lock_connection is not None:
            self._lock_connection.close()
        for pool in (self.pool, self.lane_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


@lru_cache(maxsize=2)
def _save_progress_statement(dialect: str) -> Any:
    """The bot's last handed-over id, inserted or updated: built once, bound per call."""
    insert = upsert_insert(ReceiverState.__table__, dialect).values(
        bot_email=sa.bindparam("bot_email"), last_message_id=sa.bindparam("last_message_id"),
        updated_at=sa.bindparam("updated_at"))
    return insert.on_conflict_do_update(index_elements=["bot_email"], set_={
        "last_message_id": insert.excluded.last_message_id, "updated_at": insert.excluded.updated_at})
