"""``GET``/``HEAD``/``PUT /<hash32>.ls``: the NAR listing of a store path (JSON).

The listing is the one Nix writes with ``write-nar-listing = true``
(format: :mod:`nix_formats.nar_listing`), made by the gateway from the
verified NAR the first time it is asked and kept in the cache directory
(``ls/<cache key>.json``).  An uploaded listing (``PUT``, from ``nix copy
--to 'http://...?write-nar-listing=true'``) is accepted and dropped: it is
not signed, and the gateway's own comes from bytes it checked.

Answers 200 (``application/json``); 400 bad hash; 404/502/503 as for the
narinfo; 502 if the stored NAR does not parse (a publisher bug).
"""

from __future__ import annotations

import asyncio
import os
import uuid

from aiohttp import web

from nix_formats.errors import NixFormatError
from nix_formats.nar import NarParser
from nix_formats.nar_listing import LISTING_VERSION, render_listing
from nix_formats.store_path import validate_hash_part
from storage_network.errors import StorageNetworkError
from storage_network.fetch import plan_fetch

from ..errors import BadRecordError, CacheServerError, to_http
from ..payload import payload_pieces
from ..state import CONFIG, NETWORK, RECORDS

JSON_TYPE = "application/json"


async def get_listing(request: web.Request) -> web.StreamResponse:
    """200 with the listing JSON; see the module docstring."""
    config = request.app[CONFIG]
    net = request.app[NETWORK]
    try:
        hash_part = validate_hash_part(request.match_info["hash"])
        entry = await request.app[RECORDS].get(hash_part)
        cached = config.cache_dir / "ls" / f"{entry.cache_key}.json"
        if cached.is_file():
            return web.FileResponse(cached, headers={"Content-Type": JSON_TYPE})
        plan = await plan_fetch(net, entry.record.manifest)
        parser = NarParser(compute_sha256=False, listing=True)
        try:
            loop = asyncio.get_running_loop()
            async for piece in payload_pieces(net, plan, config.prefetch):
                await loop.run_in_executor(net.pool, parser.feed, piece)  # off the event loop
            parser.finish()
        except NixFormatError as exc:
            raise BadRecordError(f"the stored NAR of {hash_part} does not parse: {exc}") from exc
        body = render_listing({"version": LISTING_VERSION, "root": parser.listing})
    except (CacheServerError, NixFormatError, StorageNetworkError) as exc:
        raise to_http(exc) from exc
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}")
    part.write_bytes(body)
    os.replace(part, cached)
    return web.Response(body=body, content_type=JSON_TYPE)


async def put_listing(request: web.Request) -> web.Response:
    """200: the upload is accepted and dropped (see the module docstring)."""
    try:
        validate_hash_part(request.match_info["hash"])
    except NixFormatError as exc:
        raise to_http(exc) from exc
    return web.Response(text="ignored: this gateway makes listings from the verified NAR\n")
