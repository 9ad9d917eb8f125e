"""The app factory: :func:`create_app` wires config, store and routes together."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from http_serving import errors as http_errors

from . import metrics, routes
from .appkeys import BUDGET, CONFIG, MAPS, NONCES, STORE
from .budget import BodyBudget
from .config import NodeConfig
from .faults import fault_middleware
from .map_follow import follow_maps
from .map_gossip import MapGossip
from .map_store import MapStore
from .metrics import NodeMetrics
from .replay import NonceLedger
from .responses import ERRORS
from .store import Store
from .write_auth import WRITE_WINDOW_SECONDS


def create_app(config: NodeConfig) -> web.Application:
    """Build the node's aiohttp application.

    Opens (and locks) the data directory and counts what it holds; the
    lock is released when the app is cleaned up.  The app has its own
    metrics registry, served on ``GET /metrics`` (see :mod:`storage_node.metrics`),
    and its own budget of request-body bytes (:mod:`storage_node.budget`).
    Middlewares: request metrics (outermost: the request clock starts before
    anything else runs), errors (:data:`storage_node.responses.ERRORS`), the
    body budget, and the test-only faults.  Routes: :mod:`storage_node.routes`.
    The network maps it keeps live under ``maps/`` (:mod:`storage_node.map_store`)
    and are passed between nodes by :mod:`storage_node.map_gossip`.

    Raises:
        ConfigError: the configuration is unusable (see :meth:`NodeConfig.validate`).
        DataDirError: the data directory cannot be created, read or locked.
        ConfigError: the ``--map`` given contradicts the maps held (see
            :meth:`storage_node.map_store.MapStore.open`).
    """
    config.validate()
    store = Store.open(config.data_dir, config.quotas)
    budget = BodyBudget(config.max_body_bytes_in_flight, config.body_wait_seconds)
    node_metrics = NodeMetrics(store, budget)
    middlewares: list[Middleware] = [node_metrics.http.middleware(),
                                     http_errors.error_middleware, budget.middleware()]
    if config.faults.active:  # TEST-ONLY: see storage_node.faults
        middlewares.append(fault_middleware(config.faults, store))
    app = web.Application(middlewares=middlewares)
    app[CONFIG] = config
    app[STORE] = store
    app[NONCES] = NonceLedger(config.data_dir / "nonces", WRITE_WINDOW_SECONDS)
    app[BUDGET] = budget
    try:
        app[MAPS] = MapStore.open(config.data_dir / "maps", config.network_map, config.bootstrap)
    except BaseException:
        store.close()
        raise
    follow_maps(config, store, app[MAPS])
    gossip = MapGossip(app[MAPS], config.node_id, config.gossip_seconds)
    app.on_startup.append(gossip.start)
    app.on_cleanup.append(gossip.stop)
    http_errors.setup(app, ERRORS)
    metrics.setup(app, node_metrics)
    for module in routes.MODULES:
        module.setup(app)

    async def close_store(app: web.Application) -> None:
        app[STORE].close()

    app.on_cleanup.append(close_store)
    return app
