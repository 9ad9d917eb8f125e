"""``GET /metrics``: Prometheus text format of the process's default registry.

What is in it: :mod:`cache_server.metrics` (requests, bytes, local cache,
uploads, upstream) and :mod:`storage_network.metrics` (per-node shard
latency and errors, degraded chunks, decode time).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from http_serving.metrics import CONTENT_TYPE

from ..auth import names_no_store_path


@names_no_store_path
async def metrics(request: web.Request) -> web.Response:
    """200 with every metric in the Prometheus text format 0.0.4."""
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /metrics`` on ``app``."""
    app.router.add_get("/metrics", metrics)
