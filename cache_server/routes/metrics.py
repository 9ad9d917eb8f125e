"""``GET /metrics``: Prometheus text format of the process's default registry.

What is in it: :mod:`cache_server.metrics` (requests, bytes, local cache,
uploads, upstream) and :mod:`storage_network.metrics` (per-node shard
latency and errors, degraded chunks, decode time).

A worker of ``nixshard serve --workers N`` answers for all of them: its
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` (:mod:`http_serving.workers`),
prometheus_client then keeps every worker's samples in files there, and
this route sums them with ``MultiProcessCollector`` (counters and
histograms add up; the cache-size gauge shows the value set last).  The
per-process ``process_*`` and ``python_*`` metrics of a single process are
not in that sum.
"""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from http_serving.metrics import CONTENT_TYPE
from http_serving.workers import MULTIPROC_ENV

from ..auth import names_no_store_path

MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV)
"""The workers' shared metrics directory, read when prometheus_client reads it (at
import); None in a single process."""


def exposed_registry() -> CollectorRegistry:
    """What ``/metrics`` shows: the default registry, or in a worker a fresh registry
    collecting every worker's samples from :data:`MULTIPROC_DIR`."""
    if MULTIPROC_DIR is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, MULTIPROC_DIR)  # type: ignore[no-untyped-call]
    return registry


@names_no_store_path
async def metrics(request: web.Request) -> web.Response:
    """200 with every metric in the Prometheus text format 0.0.4."""
    return web.Response(body=generate_latest(exposed_registry()),
                        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /metrics`` on ``app``."""
    app.router.add_get("/metrics", metrics)
