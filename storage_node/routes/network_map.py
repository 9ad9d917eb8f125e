"""``GET /map``, ``GET /map/{epoch}``, ``PUT /map``: the network map this node keeps.

Reads are open.  A ``PUT`` needs no publisher signature: a map is taken only
when the maintainers' signatures make it valid (:mod:`storage_node.map_store`).

- ``GET /map``: 200 with the newest signed map file (``application/json``), 404
  when the node holds none.
- ``GET /map/{epoch}``: that epoch, 404 when not held.
- ``PUT /map`` with a signed map file (at most
  :data:`storage_network.network_map.MAX_MAP_BYTES` bytes): 201 ``{"epoch": N,
  "outcome": "newer"}`` when it is the new newest (then passed on to the peers),
  200 with ``"filled"`` (an older epoch the node lacked) or ``"held"``; 400
  malformed, 413 too large, 409 stale, a gap or another document for a held
  epoch, 422 signatures not valid, 403 no map nor bootstrap to check it
  against; each refusal says why (``error: ...``).
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from storage_network.errors import MapError
from storage_network.network_map import MAX_MAP_BYTES, parse_signed_map

from ..appkeys import MAPS
from ..body import read_body
from ..errors import BadRequest, NotFound
from ..map_store import Outcome

_EPOCH_RE = re.compile(r"\A[1-9][0-9]{0,11}\Z")
CONTENT_TYPE = "application/json"


async def _answer(request: web.Request, epoch: int | None) -> web.Response:
    store = request.app[MAPS]
    if epoch is None:
        newest = store.newest
        if newest is None:
            raise NotFound("this node holds no network map")
        epoch = newest.epoch
    data = await asyncio.to_thread(store.read_file, epoch)
    if data is None:
        raise NotFound(f"this node holds no network map of epoch {epoch}")
    return web.Response(body=data, content_type=CONTENT_TYPE)


async def get_newest(request: web.Request) -> web.Response:
    """The newest map held."""
    return await _answer(request, None)


async def get_epoch(request: web.Request) -> web.Response:
    """The map of one epoch (1 to 12 digits, no leading zero)."""
    text = request.match_info["epoch"]
    if not _EPOCH_RE.fullmatch(text):
        raise BadRequest(f"epoch {text[:40]!r} is not a whole number >= 1")
    return await _answer(request, int(text))


async def put_map(request: web.Request) -> web.Response:
    """Offer a signed map (see the module docstring)."""
    body, _ = await read_body(request, MAX_MAP_BYTES, "network map")
    try:
        signed = await asyncio.to_thread(parse_signed_map, body)  # up to 16 MiB of JSON
    except MapError as exc:
        raise BadRequest(str(exc)) from None
    outcome = await request.app[MAPS].accept(signed)
    status = 201 if outcome is Outcome.NEWER else 200
    return web.json_response({"epoch": signed.epoch, "outcome": outcome.value}, status=status)


def setup(app: web.Application) -> None:
    """Register the map routes on ``app``."""
    app.router.add_get("/map", get_newest)
    app.router.add_get("/map/{epoch}", get_epoch)
    app.router.add_put("/map", put_map)
