"""The app factory of the cache daemon (the gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from http_serving import errors as http_errors
from http_serving import metrics as http_metrics
from storage_network import NetworkClient

from . import routes
from .auth import auth_guard
from .config import ServeConfig
from .credentials import Authenticator
from .metrics import HTTP
from .nar_cache import NarCache
from .records import RecordLookup
from .responses import ERRORS
from .staging import Staging
from .state import (
    CONFIG,
    INGESTS,
    NAR_CACHE,
    NETWORK,
    RECORDS,
    STAGING,
    UPSTREAMS,
)
from .upstream import Upstreams


def create_app(config: ServeConfig) -> web.Application:
    """An aiohttp application serving the Nix binary-cache protocol for ``config``.

    Every GET route answers HEAD too.  One middleware
    (:meth:`http_serving.metrics.RequestMetrics.middleware`; one coroutine per
    request instead of three): request metrics (see
    :mod:`cache_server.metrics`; refused requests are counted too), errors
    answered by :data:`cache_server.responses.ERRORS`, and, before the handler,
    basic auth with scoped credentials (:func:`cache_server.auth.auth_guard`).
    Routes: :mod:`cache_server.routes`.
    """
    authenticator = Authenticator(config.credentials)
    app = web.Application(middlewares=[
        HTTP.middleware(ERRORS, auth_guard(authenticator, config.read_auth))])
    http_errors.setup(app, ERRORS)
    http_metrics.setup(app, HTTP)
    app[CONFIG] = config
    app[INGESTS] = {}

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        app[NAR_CACHE] = NarCache(config.cache_dir, config.cache_max_bytes,
                                  config.cache_min_free_bytes)
        app[STAGING] = Staging(config.cache_dir / "uploads")
        # --node-timeout: per node request, counted from when it is sent (Deadlines.within)
        repairer = config.uploads.publisher if config.uploads is not None else None
        async with NetworkClient(config.network, timeout=config.node_timeout,
                                 scores=config.scores, hedge_after=config.hedge_after,
                                 repairer=repairer, keyring=config.keyring) as net, \
                aiohttp.ClientSession() as session:
            app[NETWORK] = net
            app[RECORDS] = RecordLookup(net, config.record_cache, config.negative_ttl)
            if config.upstream is not None:
                app[UPSTREAMS] = Upstreams(config.upstream.urls, config.upstream.keys, session,
                                           timeout=config.upstream.timeout,
                                           auth=config.upstream.auth)
            yield
            authenticator.close()
            tasks = list(app[INGESTS].values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app[NAR_CACHE].close()

    app.cleanup_ctx.append(state_ctx)
    for module in routes.MODULES:
        module.setup(app)
    return app
