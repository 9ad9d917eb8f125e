"""``GET``/``HEAD /<hash32>.narinfo``: the signed narinfo of a store path.

From the network first.  When the network says the path is absent and
upstream caches are configured, they are asked in order
(:mod:`cache_server.upstream`); an upstream narinfo is served only with a
valid signature by a configured upstream key, with its ``URL`` moved under
``upstream/<index>/`` so the NAR is fetched through this gateway
(:mod:`cache_server.routes.upstream_nar`).  With ingest on, the path is then
copied into the network in the background (:mod:`cache_server.upstream_ingest`).

Answers: 200; 400 bad hash; 404 absent everywhere, or absent from the
network while every upstream is down (logged: Nix then builds or asks its
other substituters instead of failing); 502 a signed record with a bad
narinfo; 503 the network cannot tell.
"""

from __future__ import annotations

import dataclasses
import logging

from aiohttp import hdrs, web

from nix_formats.store_path import validate_hash_part
from storage_network import NotFoundError

from ..auth import checks_names, require_name
from ..errors import NotServedError
from ..metrics import UPSTREAM
from ..records import Entry
from ..state import CONFIG, RECORDS, UPSTREAMS
from ..upstream import UpstreamUnavailableError
from ..upstream_ingest import start_upstream_ingest

log = logging.getLogger("nixshard.serve")
TEXT_TYPE = "text/x-nix-narinfo"
# what Response(text=..., content_type=TEXT_TYPE) sends, made once (an istr key: not
# case-folded again for each answer)
TEXT_HEADERS = {hdrs.CONTENT_TYPE: f"{TEXT_TYPE}; charset=utf-8"}
PLAIN_HEADERS = {hdrs.CONTENT_TYPE: "text/plain; charset=utf-8"}


@checks_names
async def narinfo(request: web.Request) -> web.Response:
    """200 with the narinfo text; see the module docstring for the other answers.

    A credential limited to name prefixes (:func:`cache_server.auth.require_name`) is
    refused (403) a path outside them, found in the network or upstream; an upstream
    path it is refused is not ingested.
    """
    hash_part = request.match_info["hash"]
    records = request.app[RECORDS]
    # what is remembered (only valid hash parts are) is answered without an await or a raise
    entry = records.cached(hash_part)
    if entry is not None:
        return _found(request, entry)
    absence = records.remembered_absence(hash_part)
    if absence is None:
        try:
            entry = await records.get(validate_hash_part(hash_part))
        except NotFoundError as exc:
            absence = str(exc)
        else:
            return _found(request, entry)
    if request.app[CONFIG].upstream is None:  # app[UPSTREAMS] is absent, found cheaper
        return _not_found(absence)
    return await _from_upstream(request, hash_part)


def _found(request: web.Request, entry: Entry) -> web.Response:
    """The 200 with ``entry``'s narinfo, once ``request``'s credential may read it.

    Raises:
        ForbiddenError: a credential limited to name prefixes none of which starts
            the path's name.
    """
    require_name(request, entry.narinfo.store_path.name)
    return web.Response(body=entry.body, headers=TEXT_HEADERS)


def _not_found(message: str) -> web.Response:
    """The 404 for a path the network does not have (``message``: why), body
    ``error: <message>`` as the error map writes it.

    Returned, not raised: Nix asks for many absent paths (the common 404), and the
    error map would log it at DEBUG only anyway.
    """
    return web.Response(status=404, body=f"error: {message}\n".encode(), headers=PLAIN_HEADERS)


async def _from_upstream(request: web.Request, hash_part: str) -> web.Response:
    upstreams = request.app[UPSTREAMS]
    try:
        hit = await upstreams.narinfo(hash_part)
    except UpstreamUnavailableError as exc:
        UPSTREAM.labels("down").inc()
        log.warning("%s.narinfo: not in the network and no upstream answered (%s): "
                    "answering 404", hash_part, exc)
        raise NotServedError(f"{hash_part} is not in the network and the upstream caches "
                             f"are unreachable: {exc}") from exc
    if hit is None:
        UPSTREAM.labels("miss").inc()
        raise NotServedError(f"{hash_part} is in neither the network nor the upstream "
                             "caches")
    UPSTREAM.labels("hit").inc()
    require_name(request, hit.narinfo.store_path.name)  # before any ingest
    start_upstream_ingest(request.app, hit)
    served = dataclasses.replace(hit.narinfo, url=f"upstream/{hit.index}/{hit.narinfo.url}")
    return web.Response(text=served.render(), content_type=TEXT_TYPE)


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD /{hash}.narinfo`` on ``app``."""
    app.router.add_get("/{hash}.narinfo", narinfo)
