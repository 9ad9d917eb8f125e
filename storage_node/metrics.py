"""``GET /metrics``: the node's Prometheus metrics.

Every app has its own :class:`prometheus_client.CollectorRegistry` (several
nodes may run in one process, e.g. in tests), exposed in the Prometheus text
format 0.0.4 (:data:`http_serving.metrics.CONTENT_TYPE`):

``nixshard_node_requests_total{route, method, status}``,
``nixshard_node_request_seconds{route, method}``,
``nixshard_node_bytes_sent_total{route}``, ``nixshard_node_bytes_received_total``
    the requests, counted by :class:`http_serving.metrics.RequestMetrics`
    (see there for what is counted and when).  Refusals from
    :mod:`storage_node.responses` count with their own status.
``nixshard_node_shards``, ``nixshard_node_shard_bytes``, ``nixshard_node_records``,
``nixshard_node_free_bytes``
    gauges read from the store when scraped: what ``/healthz`` reports
    (counts, bytes).
``nixshard_node_shards_healed_total``
    counter, stored shards that no longer matched their id and were
    replaced by a signed PUT of good bytes (repair healing corruption, see
    :meth:`storage_node.store.Store.commit_shard`).
``nixshard_node_body_bytes_in_flight``, ``nixshard_node_body_waiting``
    gauges, request-body bytes reserved now and requests waiting for room
    (:mod:`storage_node.budget`; a request that waited too long is a 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from http_serving import metrics as http_metrics
from http_serving.metrics import CONTENT_TYPE, RequestMetrics

from .budget import BodyBudget
from .store import Store


class StoreCollector:
    """A prometheus_client collector: the store's counts and the body budget's use,
    read at scrape time."""

    def __init__(self, store: Store, budget: BodyBudget) -> None:
        self._store = store
        self._budget = budget

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
                 "Bytes free on the data directory's filesystem.", free),
                ("nixshard_node_body_bytes_in_flight",
                 "Request-body bytes reserved in the node's body budget.", self._budget.in_use),
                ("nixshard_node_body_waiting",
                 "Requests waiting for room in the node's body budget.", self._budget.waiting)):
            family = GaugeMetricFamily(name, doc)
            if with_values and value is not None:
                family.add_metric([], value)
            yield family
        healed = CounterMetricFamily(
            "nixshard_node_shards_healed",
            "Stored shards that no longer matched their id, replaced by a signed PUT.")
        if with_values:
            healed.add_metric([], stats.healed)
        yield healed


class NodeMetrics:
    """The metrics of one node app, in their own registry (see the module docstring).

    Args:
        store: the node's store (read at scrape time for the gauges).
        budget: the node's body budget (read at scrape time).
    """

    def __init__(self, store: Store, budget: BodyBudget) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestMetrics("nixshard_node", self.registry)
        self.registry.register(StoreCollector(store, budget))

    def render(self) -> bytes:
        """The registry in the Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", NodeMetrics)


async def get_metrics(request: web.Request) -> web.Response:
    """Answer 200 with this node's metrics in the Prometheus text format 0.0.4."""
    body = await asyncio.to_thread(request.app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            "Cache-Control": "no-store"})


def setup(app: web.Application, metrics: NodeMetrics) -> None:
    """Register ``GET /metrics`` and the counting of answers on ``app``.

    The app must also run ``metrics.http.middleware()`` first of its middlewares.
    """
    app[METRICS] = metrics
    http_metrics.setup(app, metrics.http)
    app.router.add_get("/metrics", get_metrics)
