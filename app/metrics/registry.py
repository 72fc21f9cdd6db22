"""Every metric the processes count as they work, in one place.

The processes import these and count; nothing here touches the database. Under uWSGI
(``PROMETHEUS_MULTIPROC_DIR`` set by uwsgi.ini) each worker process writes its values to
a file of its own and the core's ``/metrics`` adds them up; every other process (the
poller, the dispatcher, the receiver, the log shipper) serves its own values on a loopback port. What is
better read than counted (outbox depth, active runs, heartbeats, backups) is read at
scrape time by :mod:`app.metrics.scrape`.

Labels take a few known values only (endpoint names, not paths; platforms, results), so
the number of series stays small whatever the traffic.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

HTTP_REQUESTS = Counter("lessonbot_http_requests", "HTTP requests the core answered, by endpoint and status.",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("lessonbot_http_request_duration_seconds", "Time the core took to answer, by endpoint.",
                         ["endpoint"], buckets=HTTP_BUCKETS)

MESSAGES_RECEIVED = Counter("lessonbot_messages_received", "Chat messages the core took from the receiver.")
MESSAGES_DUPLICATE = Counter("lessonbot_messages_duplicate",
                             "Chat messages handed over again (a retry of the receiver) and ignored.")

REPLIES_QUEUED = Counter("lessonbot_replies_queued", "Chat replies written to the outbox.")
ZULIP_SENT = Counter("lessonbot_zulip_sent", "Outbox items that reached Zulip, by kind (chat_reply, ops_alert).",
                     ["kind"])
ZULIP_FAILED = Counter("lessonbot_zulip_failed", "Outbox items Zulip never took, marked failed, by kind.", ["kind"])
REPLY_LATENCY = Histogram("lessonbot_reply_latency_seconds",
                          "From a chat reply being queued (with the message that caused it) to Zulip taking it.",
                          buckets=SLOW_BUCKETS)
ZULIP_RATE_LIMITED = Counter("lessonbot_zulip_rate_limited", "429 answers from Zulip.")
ZULIP_BUDGET_WAIT = Counter("lessonbot_zulip_budget_wait_seconds",
                            "Seconds callers waited for the shared Zulip request budget.")

STEP_CHECKS = Counter("lessonbot_step_checks", "Step checks run, by platform and result (passed, not_yet, error).",
                      ["platform", "result"])
STEP_CHECK_DURATION = Histogram("lessonbot_step_check_duration_seconds", "Time one step check took, by platform.",
                                ["platform"], buckets=SLOW_BUCKETS)

GRADE_DELIVERIES = Counter("lessonbot_grade_deliveries",
                           "Attempts to deliver a grade or a sheet row, by kind and result (sent, retry, waiting, failed).",
                           ["kind", "result"])

LOG_SHIPPED_FILES = Counter("lessonbot_log_shipped_files", "Log files uploaded to Drive and confirmed.")
LOG_SHIPPED_BYTES = Counter("lessonbot_log_shipped_bytes", "Bytes of log files uploaded to Drive and confirmed.")
LOG_SHIP_LAST_SUCCESS = Gauge("lessonbot_log_ship_last_success_timestamp_seconds",
                              "When a log shipping pass last ended without an error.", multiprocess_mode="max")

ALERTS_RECEIVED = Counter("lessonbot_alerts_received", "Alertmanager notifications queued for Zulip, by status.",
                          ["status"])
