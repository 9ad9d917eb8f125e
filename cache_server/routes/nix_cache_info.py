"""``GET /nix-cache-info`` (format: Nix src/libstore/binary-cache-store.cc)."""

from __future__ import annotations

from aiohttp import web

from ..config import ServeConfig
from ..state import CONFIG


async def nix_cache_info(request: web.Request) -> web.Response:
    """The cache's StoreDir, WantMassQuery and Priority."""
    config: ServeConfig = request.app[CONFIG]
    text = f"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: {config.priority}\n"
    return web.Response(text=text, content_type="text/x-nix-cache-info")
