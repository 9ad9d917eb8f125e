"""``GET``/``HEAD /upstream/<index>/<path>``: a file of upstream cache ``index``, streamed.

The narinfos this gateway serves from an upstream point their ``URL`` here
(:mod:`cache_server.routes.narinfo`).  The body is passed through as the
upstream sends it (Nix checks it against the upstream's signed NarHash); a
``Range`` header is forwarded, so interrupted downloads resume.  Only safe
relative paths are allowed (:func:`cache_server.upstream_urls.relative_url_problem`),
so nothing outside the upstream cache can be named.  The request goes through
:meth:`cache_server.upstream.Upstreams.open_file` (its timeouts and circuit
breaker).

Answers the upstream's 200/206; 404 when the upstream answers 404/403/410;
416 for its 416 (:data:`cache_server.responses.ERRORS`); 400 bad index (not
1 to 4 ASCII digits naming a configured upstream) or path; 502 the upstream
could not be reached or failed (before any body byte; after the headers the
connection is aborted, see :func:`cache_server.send.send_body`).
"""

from __future__ import annotations

import re

from aiohttp import web

from http_serving.errors import start_answer

from ..errors import BadRequestError
from ..send import send_body
from ..state import UPSTREAMS

PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")
PIECE = 1 << 20
INDEX_RE = re.compile(r"\A[0-9]{1,4}\Z")  # ASCII only: str.isdigit() accepts '²', int() not


async def upstream_nar(request: web.Request) -> web.StreamResponse:
    """Stream the upstream file; see the module docstring."""
    upstreams = request.app.get(UPSTREAMS)
    index_text, path = request.match_info["index"], request.match_info["path"]
    if upstreams is None or not INDEX_RE.match(index_text) or \
            int(index_text) >= len(upstreams.urls):
        raise BadRequestError(f"no upstream cache number {index_text[:10]!r}")
    try:
        upstream = await upstreams.open_file(int(index_text), path,
                                             byte_range=request.headers.get("Range"))
    except ValueError as exc:  # UpstreamUnavailableError propagates: see ERRORS
        raise BadRequestError(f"bad upstream path: {exc}") from exc
    async with upstream:
        resp = web.StreamResponse(status=upstream.status, headers={
            h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers})
        if request.method == "HEAD":
            await start_answer(request, resp)
            return resp
        return await send_body(request, resp, upstream.content.iter_chunked(PIECE),
                               f"upstream/{index_text}/{path[:100]}")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /upstream/{index}/{path}`` on ``app``."""
    app.router.add_get("/upstream/{index}/{path:.+}", upstream_nar)
