"""The app factory of the cache daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from storage_network.network_client import NetworkClient

from .config import ServeConfig
from .records import RecordLookup
from .routes.nar import nar
from .routes.narinfo import narinfo
from .routes.nix_cache_info import nix_cache_info
from .routes.nodes import nodes
from .state import CONFIG, NETWORK, RECORDS


def create_app(config: ServeConfig) -> web.Application:
    """An aiohttp application serving the Nix binary-cache protocol for ``config``."""
    app = web.Application()
    app[CONFIG] = config

    async def network_ctx(app: web.Application) -> AsyncIterator[None]:
        async with NetworkClient(config.network, timeout=config.node_timeout,
                                 scores=config.scores, hedge_after=config.hedge_after) as net:
            app[NETWORK] = net
            app[RECORDS] = RecordLookup(net, config.record_cache)
            yield

    app.cleanup_ctx.append(network_ctx)
    app.router.add_get("/nix-cache-info", nix_cache_info)
    app.router.add_get("/{hash}.narinfo", narinfo)
    app.router.add_get("/nar/{file}", nar)
    app.router.add_get("/nixshard/nodes", nodes)
    return app
