"""``GET``/``HEAD /upstream/<index>/<path>``: a file of upstream cache ``index``, streamed.

The narinfos this gateway serves from an upstream point their ``URL`` here
(:mod:`cache_server.routes.narinfo`).  The body is passed through as the
upstream sends it (Nix checks it against the upstream's signed NarHash); a
``Range`` header is forwarded, so interrupted downloads resume.  Only safe
relative paths are allowed (:func:`cache_server.upstream.relative_url_problem`),
so nothing outside the upstream cache can be named.  The request goes through
:meth:`cache_server.upstream.Upstreams.open_file` (its timeouts and circuit
breaker).

Answers the upstream's 200/206; 404 when the upstream answers 404/403/410;
416 for its 416; 400 bad index or path; 502 the upstream could not be
reached or failed (before any body byte; after the headers the connection
is aborted).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from ..state import UPSTREAMS
from ..upstream import UpstreamUnavailableError

log = logging.getLogger("nixshard.serve")
PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")
PIECE = 1 << 20


async def upstream_nar(request: web.Request) -> web.StreamResponse:
    """Stream the upstream file; see the module docstring."""
    upstreams = request.app.get(UPSTREAMS)
    index_text, path = request.match_info["index"], request.match_info["path"]
    if upstreams is None or not index_text.isdigit() or int(index_text) >= len(upstreams.urls):
        raise web.HTTPBadRequest(text=f"error: no upstream cache number {index_text[:10]}\n")
    try:
        upstream = await upstreams.open_file(int(index_text), path,
                                             byte_range=request.headers.get("Range"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"error: bad upstream path: {exc}\n") from exc
    except UpstreamUnavailableError as exc:
        log.warning("upstream file %s: %s", path[:100], exc)
        raise _status(exc) from exc
    async with upstream:
        resp = web.StreamResponse(status=upstream.status, headers={
            h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers})
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        try:
            async for piece in upstream.content.iter_chunked(PIECE):
                await resp.write(piece)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream file %s: aborting after the headers: %s", path[:100], exc)
            if request.transport is not None:
                request.transport.abort()
            raise
    await resp.write_eof()
    return resp


def _status(exc: UpstreamUnavailableError) -> web.HTTPException:
    text = f"error: {exc}\n"
    if exc.status in (404, 403, 410):
        return web.HTTPNotFound(text=text)
    if exc.status == 416:
        return web.HTTPRequestRangeNotSatisfiable(text=text)
    return web.HTTPBadGateway(text=text)
