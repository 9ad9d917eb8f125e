"""``GET``/``HEAD /nar/<store hash>-<nix32 NarHash>.nar.zst``: a NAR as zstd frames.

Every chunk's shards are located before the 200 is sent (503 otherwise).
The body is the chunks' zstd frames back to back, which is one valid
``.nar.zst``; Content-Length is their total size.  If a chunk cannot be
rebuilt after the headers went out, the connection is aborted so the
client sees a short transfer, never a clean end.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from nix_formats.errors import NixFormatError
from storage_network.errors import StorageNetworkError
from storage_network.fetch import plan_fetch, stream_payload

from ..errors import BadRequestError, CacheServerError, NoSuchNarError, to_http
from ..state import CONFIG, NETWORK, RECORDS

log = logging.getLogger("nixshard.serve")
NAR_FILE_RE = re.compile(r"^([0-9a-df-np-sv-z]{32})-[0-9a-df-np-sv-z]{52}\.nar\.zst$")


def parse_nar_file(name: str) -> str:
    """The store-path hash part named by a NAR file name.

    Raises:
        BadRequestError: the name is not ``<32 nix32>-<52 nix32>.nar.zst``.
    """
    m = NAR_FILE_RE.match(name)
    if m is None:
        raise BadRequestError(f"bad NAR file name {name[:100]!r}: want "
                              "<store hash>-<nix32 NarHash>.nar.zst")
    return m.group(1)


async def nar(request: web.Request) -> web.StreamResponse:
    """Stream the NAR; see the module docstring for the failure behaviour."""
    name = request.match_info["file"]
    net = request.app[NETWORK]
    try:
        hash_part = parse_nar_file(name)
        entry = await request.app[RECORDS].get(hash_part)
        if entry.narinfo.url != f"nar/{name}":
            raise NoSuchNarError(f"{entry.narinfo.store_path.path} has NAR {entry.narinfo.url}, "
                                 f"not nar/{name}")
        manifest = entry.record.manifest
        plan = None if request.method == "HEAD" else await plan_fetch(net, manifest)
    except (CacheServerError, NixFormatError, StorageNetworkError) as exc:
        log.warning("GET nar/%s: %s", name[:80], exc)
        raise to_http(exc) from exc
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": "application/x-nix-nar",
        "Content-Length": str(manifest.stored_size),
    })
    await resp.prepare(request)
    if plan is None:
        return resp
    try:
        async for frame in stream_payload(net, plan, request.app[CONFIG].prefetch):
            await resp.write(frame)
    except StorageNetworkError as exc:
        log.error("nar/%s: aborting the transfer after the headers: %s", name, exc)
        if request.transport is not None:
            request.transport.abort()
        raise
    await resp.write_eof()
    return resp
