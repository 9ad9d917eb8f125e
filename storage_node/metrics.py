"""``GET /metrics``: the node's Prometheus metrics, and the middleware that counts requests.

Every app has its own :class:`prometheus_client.CollectorRegistry` (several
nodes may run in one process, e.g. in tests), exposed in the Prometheus text
format 0.0.4:

``nixshard_node_requests_total{route, method, status}``
    counter, answered requests.  ``route`` is the matched route's pattern
    (``/shards/{id}``, never the raw path); ``unmatched`` when no route
    matched, and for 405 answers (aiohttp matches no route then).
    ``method`` is the HTTP method, ``other`` for a method no route of a
    node uses.  ``status`` is the status sent, ``499`` when the handler
    was cancelled before it answered.  Refusals from
    :mod:`storage_node.responses` count with their own status.
``nixshard_node_request_seconds{route, method}``
    histogram, seconds from the start of the middlewares until the
    response headers are ready (time to first byte; a shard file or a
    listing is written after).  Writes refused on ``Expect: 100-continue``
    are answered before any middleware runs: they are counted above but
    not timed.
``nixshard_node_bytes_sent_total`` / ``nixshard_node_bytes_received_total``
    counters, response and request body bytes.  Sent: the response's
    Content-Length when its headers go out (0 for ``HEAD``, 1xx, 204 and
    304), or for a body streamed without one the bytes written, headers
    and chunk framing included, once the handler returns.  Received: the
    request body bytes read off the connection when the answer is made.
``nixshard_node_shards``, ``nixshard_node_shard_bytes``, ``nixshard_node_records``,
``nixshard_node_free_bytes``
    gauges read from the store when scraped: what ``/healthz`` reports
    (counts, bytes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`prometheus_client.generate_latest` writes (the classic text format)."""

UNMATCHED = "unmatched"
CANCELLED_STATUS = "499"
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
# Request key of the request's _Pending (a RequestKey where aiohttp has them).
_PENDING: Any = (web.RequestKey("nixshard_metrics", object) if hasattr(web, "RequestKey")
                 else "nixshard_metrics")


class StoreCollector:
    """A prometheus_client collector: the store's counts as gauges, read at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        """The gauges without samples (lets the registry refuse duplicate names)."""
        return list(self._families(with_values=False))

    def collect(self) -> list[Metric]:
        """The gauges with the store's current counts (free bytes skipped if unreadable)."""
        return list(self._families(with_values=True))

    def _families(self, with_values: bool) -> Iterator[Metric]:
        stats = self._store.stats
        free: int | None = None
        if with_values:
            try:
                free = self._store.free_bytes()
            except OSError:
                free = None
        for name, doc, value in (
                ("nixshard_node_shards", "Shards stored.", stats.shards),
                ("nixshard_node_shard_bytes", "Bytes of all stored shards.", stats.shard_bytes),
                ("nixshard_node_records", "Records stored.", stats.records),
                ("nixshard_node_free_bytes",
                 "Bytes free on the data directory's filesystem.", free)):
            family = GaugeMetricFamily(name, doc)
            if with_values and value is not None:
                family.add_metric([], value)
            yield family


class NodeMetrics:
    """The metrics of one node app, in their own registry (see the module docstring).

    Args:
        store: the node's store (read at scrape time for the gauges).
    """

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nixshard_node_requests", "Requests answered, by route pattern, method and status.",
            ["route", "method", "status"], registry=self.registry)
        self.seconds = Histogram(
            "nixshard_node_request_seconds",
            "Seconds from the start of the middlewares until the response headers were ready.",
            ["route", "method"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.bytes_sent = Counter(
            "nixshard_node_bytes_sent", "Response body bytes sent.", registry=self.registry)
        self.bytes_received = Counter(
            "nixshard_node_bytes_received", "Request body bytes received.",
            registry=self.registry)
        self.registry.register(StoreCollector(store))

    def count(self, request: web.Request, status: int | str, seconds: float | None) -> None:
        """Count one answered request, and the request body bytes read so far.

        Args:
            status: the status sent (or :data:`CANCELLED_STATUS`).
            seconds: from the start of the middlewares to the answer's headers, or
                None when not timed.
        """
        route, method = route_label(request), method_label(request.method)
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        if seconds is not None:
            self.seconds.labels(route=route, method=method).observe(seconds)
        received = request.content.total_bytes
        if received:
            self.bytes_received.inc(received)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", NodeMetrics)


def route_label(request: web.Request) -> str:
    """The canonical pattern of the route ``request`` matched (``/shards/{id}``), or
    ``unmatched``."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def method_label(method: str) -> str:
    """``method``, or ``other`` for one outside :data:`METHODS` (bounds the label values)."""
    return method if method in METHODS else "other"


def announced_body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int | None:
    """Body bytes a response being prepared will send: 0 when it has no body
    (``HEAD``, 1xx, 204, 304), its Content-Length, or None (a stream without one)."""
    if request.method == "HEAD" or response.status in (204, 304) or response.status < 200:
        return 0
    return response.content_length


@dataclass
class _Pending:
    """What the middleware knows of a request it is running."""

    started: float | None  # perf_counter seconds; None: no middleware ran
    counted: bool = False
    stream: web.StreamResponse | None = None  # prepared without a Content-Length


def metrics_middleware(metrics: NodeMetrics) -> Middleware:
    """The outermost middleware: starts each request's clock (seconds).

    The answer is counted when it is prepared (:func:`setup` hooks
    ``on_response_prepare``): its status is final then, also for answers
    :func:`storage_node.responses.error_middleware` makes of refusals,
    aiohttp's 500 for a crash, and a file's 206/304/416.  A handler
    cancelled before it answered counts as ``499``; a body streamed
    without Content-Length is counted once the handler returns.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        pending = request[_PENDING] = _Pending(started)
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            if not pending.counted:
                pending.counted = True
                metrics.count(request, CANCELLED_STATUS, time.perf_counter() - started)
            raise
        if pending.stream is not None:
            metrics.bytes_sent.inc(pending.stream.body_length)  # headers included
        return response

    return middleware


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: count the request's answer (once; see
    :func:`metrics_middleware`).  Answers no middleware saw (``Expect``
    refusals) are counted untimed."""
    pending = request.get(_PENDING)
    if pending is None:
        pending = request[_PENDING] = _Pending(started=None)
    if pending.counted:
        return
    pending.counted = True
    metrics = request.app[METRICS]
    metrics.count(request, response.status,
                  None if pending.started is None else time.perf_counter() - pending.started)
    body = announced_body_bytes(request, response)
    if body is None:
        pending.stream = response
    elif body:
        metrics.bytes_sent.inc(body)


async def get_metrics(request: web.Request) -> web.Response:
    """Answer 200 with this node's metrics in the Prometheus text format 0.0.4."""
    body = await asyncio.to_thread(request.app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            "Cache-Control": "no-store"})


def setup(app: web.Application, metrics: NodeMetrics) -> None:
    """Register ``GET /metrics`` and the counting of answers on ``app``.

    The app must also run :func:`metrics_middleware` first of its middlewares.
    """
    app[METRICS] = metrics
    app.on_response_prepare.append(_on_prepare)
    app.router.add_get("/metrics", get_metrics)
