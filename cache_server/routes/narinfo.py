"""``GET``/``HEAD /<hash32>.narinfo``: the signed narinfo of a store path."""

from __future__ import annotations

from aiohttp import web

from nix_formats.errors import NixFormatError
from nix_formats.store_path import validate_hash_part
from storage_network.errors import StorageNetworkError

from ..errors import CacheServerError, to_http
from ..state import RECORDS


async def narinfo(request: web.Request) -> web.Response:
    """200 with the narinfo text; 400 bad hash; 404 absent; 503 network short."""
    try:
        hash_part = validate_hash_part(request.match_info["hash"])
        entry = await request.app[RECORDS].get(hash_part)
    except (CacheServerError, NixFormatError, StorageNetworkError) as exc:
        raise to_http(exc) from exc
    return web.Response(text=entry.text, content_type="text/x-nix-narinfo")
