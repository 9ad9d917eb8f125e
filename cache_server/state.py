"""Typed keys of what the app keeps between requests."""

from __future__ import annotations

import asyncio

from aiohttp import web

from storage_network import NetworkClient

from .config import ServeConfig
from .nar_cache import NarCache
from .records import RecordLookup
from .staging import Staging
from .upstream import Upstreams

CONFIG = web.AppKey("config", ServeConfig)
NETWORK = web.AppKey("network", NetworkClient)
RECORDS = web.AppKey("records", RecordLookup)
NAR_CACHE = web.AppKey("nar_cache", NarCache)
STAGING = web.AppKey("staging", Staging)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
# store hash -> the ingest running for it (uploads and upstream copies): one at a time per path
INGESTS = web.AppKey("ingests", dict[str, asyncio.Task[object]])
