"""The app factory: :func:`create_app` wires config, store and routes together."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import metrics, routes_health, routes_listing, routes_proofs, routes_records, routes_shards
from .appkeys import BUDGET, CONFIG, NONCES, STORE
from .budget import BodyBudget
from .config import NodeConfig
from .faults import fault_middleware
from .metrics import NodeMetrics
from .replay import NonceLedger
from .responses import error_middleware, remember_prepared
from .store import Store
from .write_auth import WRITE_WINDOW_SECONDS


def create_app(config: NodeConfig) -> web.Application:
    """Build the node's aiohttp application.

    Opens (and locks) the data directory and counts what it holds; the
    lock is released when the app is cleaned up.  The app has its own
    metrics registry, served on ``GET /metrics`` (see :mod:`storage_node.metrics`),
    and its own budget of request-body bytes (:mod:`storage_node.budget`).

    Raises:
        ConfigError: the configuration is unusable (see :meth:`NodeConfig.validate`).
        DataDirError: the data directory cannot be created, read or locked.
    """
    config.validate()
    store = Store.open(config.data_dir)
    budget = BodyBudget(config.max_body_bytes_in_flight, config.body_wait_seconds)
    node_metrics = NodeMetrics(store, budget)
    # outermost first: the request clock starts before anything else runs
    middlewares: list[Middleware] = [node_metrics.http.middleware(), error_middleware,
                                     budget.middleware()]
    if config.faults.active:  # TEST-ONLY: see storage_node.faults
        middlewares.append(fault_middleware(config.faults, store))
    app = web.Application(middlewares=middlewares)
    app[CONFIG] = config
    app[STORE] = store
    app[NONCES] = NonceLedger(config.data_dir / "nonces", WRITE_WINDOW_SECONDS)
    app[BUDGET] = budget
    app.on_response_prepare.append(remember_prepared)
    routes_health.setup(app)
    metrics.setup(app, node_metrics)
    routes_shards.setup(app)
    routes_records.setup(app)
    routes_listing.setup(app)
    routes_proofs.setup(app)

    async def close_store(app: web.Application) -> None:
        app[STORE].close()

    app.on_cleanup.append(close_store)
    return app
