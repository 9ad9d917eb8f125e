"""``GET /healthz``: liveness of the daemon (always open, even with ``read_auth``)."""

from __future__ import annotations

from aiohttp import web

from storage_network.nodes.health import Standing

from ..state import NAR_CACHE, NETWORK


async def healthz(request: web.Request) -> web.Response:
    """200 JSON ``{"status": "ok", "nodes", "nodes_in_good_standing", "nar_cache_bytes"}``.

    Counts are of the network file's nodes; bytes are bytes.  The daemon
    answers as long as it runs: whether a NAR can be rebuilt depends on
    which nodes hold its shards, which ``GET /nixshard/nodes`` details.
    """
    net = request.app[NETWORK]
    ids = [node.id for node in net.network.nodes]
    good = sum(net.health.standing(i) == Standing.GOOD for i in ids)
    return web.json_response({"status": "ok", "nodes": len(ids),
                              "nodes_in_good_standing": good,
                              "nar_cache_bytes": request.app[NAR_CACHE].bytes})


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /healthz`` on ``app``."""
    app.router.add_get("/healthz", healthz)
