"""Serving the metrics: the core's ``/metrics`` (all uWSGI processes added up) and each worker's own port.

``/metrics`` answers loopback callers only (Prometheus on the machine); nginx refuses it
from outside before the core sees the request, and the view refuses it again here. A
worker serves its metrics on 127.0.0.1 at the port its settings give it (0: none).
"""

from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app import current
from app.http import ApiError, is_loopback
from app.metrics.registry import HTTP_LATENCY, HTTP_REQUESTS
from app.metrics.scrape import StateCollector

log = logging.getLogger(__name__)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # requests no route took (404s): one label value, not one per path

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if not is_loopback(request.remote_addr):
        raise ApiError(403, "forbidden", "/metrics answers loopback callers only.")
    scraped = CollectorRegistry()
    scraped.register(StateCollector(current.settings()))
    body = generate_latest(_counted()) + generate_latest(scraped)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _counted() -> CollectorRegistry:
    """What this process counted, or under uWSGI what every process of it counted, added up."""
    if not os.environ.get(MULTIPROCESS_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def init_app(app: Flask) -> None:
    """Count every request by endpoint and status, and time it; install the uWSGI exit hook."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        endpoint = request.url_rule.endpoint if request.url_rule is not None else UNMATCHED
        HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if started is not None:
            HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        return response

    app.register_blueprint(bp)
    _mark_dead_at_uwsgi_exit()


def _mark_dead_at_uwsgi_exit() -> None:
    """A uWSGI worker that ends (max-requests, reload) drops its live gauges from the sum."""
    if not os.environ.get(MULTIPROCESS_ENV):
        return
    try:
        import uwsgi  # only inside uWSGI
    except ImportError:
        return
    uwsgi.atexit = lambda: multiprocess.mark_process_dead(os.getpid())


def serve_worker_metrics(name: str, port: int, index: int = 0) -> None:
    """Serve this worker's metrics on 127.0.0.1:``port`` + ``index`` from a daemon thread (port 0: not at all).

    ``index`` tells several processes of one program apart (``LESSONBOT_WORKER_INDEX``).

    A port that is taken is one error line, not a stopped worker: Prometheus then sees the
    target down and alerts, while the worker goes on doing its job.
    """
    if not port:
        return
    port += index
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as error:
        log.error("%s: cannot serve metrics on 127.0.0.1:%d (%s)", name, port, error.strerror or error)
        return
    log.info("%s: metrics on http://127.0.0.1:%d/metrics", name, port)
