"""``GET``/``HEAD``/``PUT /<hash32>.ls``: the NAR listing of a store path (JSON).

The listing is the one Nix writes with ``write-nar-listing = true``
(format: :mod:`nix_formats.nar_listing`), made by the gateway from the
verified NAR the first time it is asked and kept in the cache directory
(``ls/<cache key>.json``).  An uploaded listing (``PUT``, from ``nix copy
--to 'http://...?write-nar-listing=true'``) is accepted and dropped: it is
not signed, and the gateway's own comes from bytes it checked.

Making it is bounded: the NAR is decompressed chunk by chunk, each to its
size in the signed manifest (:mod:`cache_server.payload`), and a NAR of
more than :data:`MAX_LISTING_NODES` nodes gets no listing (404: Nix then
reads the NAR itself).  A listing that cannot be written to the cache
directory (a full disk) is still served.

Answers 200 (``application/json``); 400 bad hash; 404/502/503 as for the
narinfo; 404 a NAR too large to list; 502 if the stored NAR does not parse
(a publisher bug).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path

from aiohttp import web

from nix_formats.errors import NarListingTooLargeError, NixFormatError
from nix_formats.nar_listing import LISTING_VERSION, render_listing
from nix_formats.nar_parser import NarParser
from nix_formats.store_path import validate_hash_part
from storage_network import plan_fetch

from ..auth import checks_names, names_no_store_path, require_name
from ..errors import BadRecordError, NotServedError
from ..payload import payload_pieces
from ..state import CONFIG, NETWORK, RECORDS

log = logging.getLogger("nixshard.serve")
JSON_TYPE = "application/json"
#: Most nodes (files, directories, symlinks) a listing is made for: a few hundred
#: bytes of memory each (the largest paths of nixpkgs have a few hundred thousand).
MAX_LISTING_NODES = 1_000_000


@checks_names
async def get_listing(request: web.Request) -> web.StreamResponse:
    """200 with the listing JSON; see the module docstring."""
    config = request.app[CONFIG]
    net = request.app[NETWORK]
    hash_part = validate_hash_part(request.match_info["hash"])
    entry = await request.app[RECORDS].get(hash_part)
    require_name(request, entry.narinfo.store_path.name)
    cached = config.cache_dir / "ls" / f"{entry.cache_key}.json"
    if cached.is_file():
        return web.FileResponse(cached, headers={"Content-Type": JSON_TYPE})
    plan = await plan_fetch(net, entry.record.manifest)
    parser = NarParser(compute_sha256=False, listing=True, max_listing_nodes=MAX_LISTING_NODES)
    try:
        loop = asyncio.get_running_loop()
        async for piece in payload_pieces(net, plan, config.prefetch):
            await loop.run_in_executor(net.pool, parser.feed, piece)  # off the event loop
        parser.finish()
    except NarListingTooLargeError as exc:
        log.info("%s.ls: no listing: %s", hash_part, exc)
        raise NotServedError(f"no listing of {hash_part}: {exc}") from exc
    except NixFormatError as exc:
        raise BadRecordError(f"the stored NAR of {hash_part} does not parse: {exc}") from exc
    body = render_listing({"version": LISTING_VERSION, "root": parser.listing})
    _keep(cached, body)
    return web.Response(body=body, content_type=JSON_TYPE)


def _keep(cached: Path, body: bytes) -> None:
    """Write ``body`` to ``cached`` whole or not at all; a disk error is logged, not raised."""
    part = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(body)
        os.replace(part, cached)
    except OSError as exc:
        log.warning("%s: cannot keep the listing on disk (%s); serving it anyway",
                    cached.name, exc)
        part.unlink(missing_ok=True)


@names_no_store_path  # dropped unread
async def put_listing(request: web.Request) -> web.Response:
    """200: the upload is accepted and dropped (see the module docstring)."""
    validate_hash_part(request.match_info["hash"])
    return web.Response(text="ignored: this gateway makes listings from the verified NAR\n")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD``/``PUT /{hash}.ls`` on ``app``."""
    app.router.add_get("/{hash}.ls", get_listing)
    app.router.add_put("/{hash}.ls", put_listing)
