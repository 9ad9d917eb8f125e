"""``GET``/``HEAD``/``PUT /realisations/<id>.doi``: realisations of CA derivations
(see :mod:`cache_server.realisations`).

``<id>`` is ``sha256:<64 hex or 52 nix32>!<output name>`` (Nix sends base16,
``src/libstore/realisation.cc``, ``DrvOutput::to_string``).

GET answers 200 with the realisation's JSON as Nix writes it
(``application/json``), 400 for a malformed id, 404 when the network holds
no realisation of it, 502 for a signed record with bad content, 503 when
the network cannot tell.  Only the network is asked (no upstream cache).

A credential limited to name prefixes reaches only the realisations whose output
path's name is within them (403 otherwise; :func:`cache_server.auth.require_name`).

PUT (``nix copy --to``; credentials checked by the middleware) answers 201
stored; 200 the network already holds the same realisation (nothing
written); 400 a malformed id or JSON, a body for another id, an output path
or a dependency not in the cache; 403 uploads disabled or no trusted
signature; 409 the network holds it (or a dependency) with another output
path; 413 a body over 1 MiB; 503 the network did not store it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from nix_formats.realisation import Realisation

from ..auth import checks_names, require_name
from ..errors import ForbiddenError, UploadRejectedError
from ..realisations import commit_realisation, load_realisation, parse_drv_output
from ..request_body import read_body
from ..state import CONFIG, NETWORK, RECORDS

log = logging.getLogger("nixshard.serve")
JSON_TYPE = "application/json"


@checks_names
async def get_realisation(request: web.Request) -> web.Response:
    """200 with the realisation's JSON; see the module docstring for the other answers."""
    drv_output = parse_drv_output(request.match_info["id"])
    realisation = await load_realisation(request.app[RECORDS], drv_output)
    require_name(request, realisation.out_path.name)
    return web.Response(text=realisation.render(), content_type=JSON_TYPE)


@checks_names
async def put_realisation(request: web.Request) -> web.Response:
    """Check and commit an uploaded realisation (see the module docstring)."""
    uploads = request.app[CONFIG].uploads
    if uploads is None:
        raise ForbiddenError("uploads are disabled on this gateway")
    drv_output = parse_drv_output(request.match_info["id"])
    body = await read_body(request, f"realisations/{drv_output}.doi")  # 413 past 1 MiB
    realisation = Realisation.parse(body)  # RealisationError: 400
    require_name(request, realisation.out_path.name)
    if realisation.id != drv_output:
        raise UploadRejectedError(f"realisations/{drv_output}.doi holds the realisation of "
                                  f"{realisation.id}")
    status = await commit_realisation(request.app[NETWORK], request.app[RECORDS], uploads,
                                      realisation)
    return web.Response(status=status, text="stored\n" if status == 201 else "exists\n")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD``/``PUT /realisations/{id}.doi`` on ``app``."""
    app.router.add_get("/realisations/{id}.doi", get_realisation)
    app.router.add_put("/realisations/{id}.doi", put_realisation)
