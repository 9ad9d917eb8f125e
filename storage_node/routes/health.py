"""``GET /healthz``: liveness and what the node holds."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import CONFIG, STORE


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 JSON ``{"status": "ok", "node_id", "shards", "shard_bytes", "records",
    "free_bytes", "usage", "quotas"}`` (counts kept in memory; bytes are bytes).

    ``usage``: publisher key name -> bytes of shards and records charged to it
    here; ``quotas``: publisher key name -> the quota this node enforces
    (:mod:`storage_node.usage`).  Neither is secret: ``nixshard status`` reads
    them without a key.
    """
    store = request.app[STORE]
    stats = store.stats
    return web.json_response({
        "status": "ok",
        "node_id": request.app[CONFIG].node_id,
        "shards": stats.shards,
        "shard_bytes": stats.shard_bytes,
        "records": stats.records,
        "free_bytes": store.free_bytes(),
        "usage": store.usage.usage(),
        "quotas": store.usage.quotas,
    })


def setup(app: web.Application) -> None:
    """Register ``/healthz`` on ``app``."""
    app.router.add_get("/healthz", healthz)
