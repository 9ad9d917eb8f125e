"""``GET``/``HEAD /upstream/<index>/<path>``: a file of upstream cache ``index``, streamed.

The narinfos this gateway serves from an upstream point their ``URL`` here
(:mod:`cache_server.routes.narinfo`).  The body is passed through as the
upstream sends it (Nix checks it against the upstream's signed NarHash); a
``Range`` header is forwarded, so interrupted downloads resume.  Only safe
relative paths are allowed (:func:`cache_server.upstream.relative_url_problem`),
so nothing outside the upstream cache can be named.

Answers the upstream's 200/206/404/416; 400 bad index or path; 502 the
upstream could not be reached or failed.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from ..state import UPSTREAM_SESSION, UPSTREAMS

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
        url = upstreams.nar_url(int(index_text), path)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"error: bad upstream path: {exc}\n") from exc
    headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    session = request.app[UPSTREAM_SESSION]
    resp: web.StreamResponse | None = None
    try:
        async with session.request(request.method, url, headers=headers,
                                   auto_decompress=False) as upstream:
            if upstream.status not in (200, 206):
                raise _status(upstream, url)
            resp = web.StreamResponse(status=upstream.status, headers={
                h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers})
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            async for piece in upstream.content.iter_chunked(PIECE):
                await resp.write(piece)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("upstream %s: %s", url, exc)
        if resp is not None and resp.prepared:
            if request.transport is not None:
                request.transport.abort()
            raise
        raise web.HTTPBadGateway(text=f"error: upstream {url}: {exc}\n") from exc
    assert resp is not None
    await resp.write_eof()
    return resp


def _status(upstream: aiohttp.ClientResponse, url: str) -> web.HTTPException:
    text = f"error: upstream answered {upstream.status} for {url}\n"
    if upstream.status in (404, 403, 410):
        return web.HTTPNotFound(text=text)
    if upstream.status == 416:
        return web.HTTPRequestRangeNotSatisfiable(text=text)
    return web.HTTPBadGateway(text=text)
