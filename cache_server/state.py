"""Typed keys of what the app keeps between requests."""

from __future__ import annotations

from aiohttp import web

from storage_network.network_client import NetworkClient

from .config import ServeConfig
from .records import RecordLookup

CONFIG = web.AppKey("config", ServeConfig)
NETWORK = web.AppKey("network", NetworkClient)
RECORDS = web.AppKey("records", RecordLookup)
