"""Typed keys under which :func:`storage_node.app.create_app` stores shared state."""

from __future__ import annotations

from aiohttp import web

from .budget import BodyBudget
from .config import NodeConfig
from .map_store import MapStore
from .replay import NonceLedger
from .store import Store

CONFIG = web.AppKey("config", NodeConfig)
STORE = web.AppKey("store", Store)
NONCES = web.AppKey("nonces", NonceLedger)
BUDGET = web.AppKey("body_budget", BodyBudget)
MAPS = web.AppKey("network_maps", MapStore)
