"""``GET``/``HEAD /nar/<store hash>-<nix32 NarHash>.nar.zst``: a NAR as zstd frames.

Every chunk's shards are located before the 200 is sent (503 otherwise).
The body is the chunks' zstd frames back to back, which is one valid
``.nar.zst``; Content-Length is their total size.  If a chunk cannot be
rebuilt after the headers went out, the connection is aborted so the
client sees a short transfer, never a clean end.

``Accept-Ranges: bytes`` is sent and one ``Range`` is honoured (206).  With
the local disk cache on, a hot NAR is sent from its file with sendfile
(no byte passes through Python); a cold one is fetched once into the cache
while every request for it, in any worker process, follows the growing file
(:mod:`cache_server.nar_cache`).  The cache never breaks a read: with no
room on its disk the NAR is streamed from the network uncached, and when
the disk fails during a fill each request following it continues from the
network at its own offset (the fetch is planned again and only the chunks
from that byte on are fetched).

``HEAD /nar/<FileHash>.nar<ext>`` (the names ``nix copy --to`` uses) answers
200 when such an upload is staged, so Nix does not send it twice, and 404
otherwise; a ``GET`` of such a name is 404 (staged uploads are not served).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

from aiohttp import web

from storage_network import plan_fetch, plan_stream, stream_payload

from ..auth import checks_names, require_name
from ..byte_range import ByteRange, parse_range, range_frames
from ..errors import BadRequestError, NoSuchNarError, NotServedError
from ..metrics import NAR_CACHE_OUTCOMES
from ..nar_cache import Fill, PeerFill
from ..records import Entry
from ..send import send_body
from ..state import CONFIG, NAR_CACHE, NETWORK, RECORDS, STAGING

NAR_FILE_RE = re.compile(r"\A([0-9a-df-np-sv-z]{32})-[0-9a-df-np-sv-z]{52}\.nar\.zst\Z")
UPLOAD_FILE_RE = re.compile(r"\A[0-9a-df-np-sv-z]{52}\.nar(\.xz|\.bz2|\.zst|\.br|\.lz4|\.lzip)?\Z")
NAR_TYPE = "application/x-nix-nar"


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


async def _entry(request: web.Request, name: str) -> Entry:
    entry = await request.app[RECORDS].get(parse_nar_file(name))
    require_name(request, entry.narinfo.store_path.name)
    if entry.narinfo.url != f"nar/{name}":
        raise NoSuchNarError(f"{entry.narinfo.store_path.path} has NAR {entry.narinfo.url}, "
                             f"not nar/{name}")
    return entry


def _staged(request: web.Request, name: str) -> web.Response:
    if request.method == "HEAD" and request.app[STAGING].path(name) is not None:
        return web.Response(status=200)
    raise NotServedError(f"no NAR {name}")


@checks_names  # staged uploads (HEAD) name no store path
async def nar(request: web.Request) -> web.StreamResponse:
    """Send the NAR (or the asked range); see the module docstring for failures."""
    name = request.match_info["file"]
    if UPLOAD_FILE_RE.match(name):
        return _staged(request, name)
    net = request.app[NETWORK]
    cache = request.app[NAR_CACHE]
    prefetch = request.app[CONFIG].prefetch
    entry = await _entry(request, name)
    manifest = entry.record.manifest
    size = manifest.frames_size
    wanted = parse_range(request, size)
    if request.method == "HEAD":
        return web.Response(status=206 if wanted.partial else 200,
                            headers={"Content-Type": NAR_TYPE, **wanted.headers()})

    async def start() -> AsyncIterator[bytes]:
        plan = await plan_stream(net, manifest, prefetch)
        return stream_payload(net, plan, prefetch)

    found: Path | Fill | PeerFill | None
    if cache.caches(size):
        found, outcome = await cache.open(entry.cache_key, size, start)
    else:
        found, outcome = None, "bypass"
    if found is None:  # not cached: straight from the network
        plan = await (plan_fetch(net, manifest) if wanted.start
                      else plan_stream(net, manifest, prefetch))
    NAR_CACHE_OUTCOMES.labels(outcome).inc()
    if found is None:
        return await _send(request, name, wanted, range_frames(net, plan, wanted, prefetch))
    if not isinstance(found, Path):  # a fill in progress, here or in another worker

        async def resume(start: int, end: int) -> AsyncIterator[bytes]:
            """Bytes ``[start, end)`` from the network (the cache's disk failed)."""
            plan = await plan_fetch(net, manifest)
            async for piece in range_frames(net, plan, ByteRange(start, end, size, True),
                                            prefetch):
                yield piece

        return await _send(request, name, wanted, found.read(wanted.start, wanted.end, resume))
    return web.FileResponse(found, headers={"Content-Type": NAR_TYPE})


def _send(request: web.Request, name: str, wanted: ByteRange,
          pieces: AsyncIterator[bytes]) -> Awaitable[web.StreamResponse]:
    """Send ``pieces`` as the body (200, or 206 for a range); see :func:`send_body`."""
    resp = web.StreamResponse(status=206 if wanted.partial else 200,
                              headers={"Content-Type": NAR_TYPE, **wanted.headers()})
    return send_body(request, resp, pieces, f"nar/{name}")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /nar/{file}`` on ``app``."""
    app.router.add_get("/nar/{file}", nar)
