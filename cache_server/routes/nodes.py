"""``GET /nixshard/nodes``: how each storage node has behaved for this daemon (JSON).

Answer (counters since the daemon started; times in seconds, sizes in bytes)::

    {"nodes": [{"node_id": "node-1", "url": "http://...",
                "shards_served": 12, "bytes_served": 81234,
                "failures": 0, "slow_events": 1,
                "standing": "good" | "demoted" | "benched", "benched": false,
                "out_seconds": 0.0, "reason": null | "served bad data for shard ...",
                "score": 1.0}, ...]}

``reason`` is the last thing that went wrong with the node; ``out_seconds``
is what is left of its bench or demotion; ``score`` its audit score
(see :mod:`storage_network.nodes.health`).  Nodes are listed in network-file order.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..auth import names_no_store_path
from ..state import NETWORK


@names_no_store_path
async def nodes(request: web.Request) -> web.Response:
    """200 with every node's read-path status."""
    net = request.app[NETWORK]
    urls = {node.id: node.url for node in net.network.nodes}
    answer = [{"node_id": status.node_id, "url": urls[status.node_id],
               **{k: v for k, v in asdict(status).items() if k != "node_id"}}
              for status in net.health.statuses(urls)]
    return web.json_response({"nodes": answer})


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /nixshard/nodes`` on ``app``."""
    app.router.add_get("/nixshard/nodes", nodes)
