"""``GET``/``HEAD``/``PUT /log/<drv basename>``: build logs (see :mod:`cache_server.build_logs`).

GET answers 200 with the log as ``text/plain`` (uncompressed, as Nix
expects), 400 for a name that is not a ``.drv`` basename, 404 when the
network holds no log for it, 503 when it cannot tell or cannot rebuild it
(before any body byte; a failure after the headers aborts the connection).
PUT (``nix store copy-log --to``; credentials checked by the middleware)
stores the body: 201; 403 uploads disabled; 413 too large; 503 the network
did not store it.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from http_serving.errors import start_answer
from nix_formats.store_path import StorePath
from nix_records import log_metadata, log_record_key
from storage_network import NotFoundError, fetch_record, plan_fetch

from ..auth import checks_names, require_name
from ..build_logs import parse_drv_name, store_log
from ..errors import ForbiddenError
from ..payload import payload_pieces
from ..send import send_body
from ..state import CONFIG, NETWORK, STAGING

log = logging.getLogger("nixshard.serve")
MAX_LOG_BYTES = 256 * 1024 * 1024


@checks_names
async def get_log(request: web.Request) -> web.StreamResponse:
    """Send the build log of the derivation named in the path."""
    net = request.app[NETWORK]
    drv = parse_drv_name(request.match_info["drv"])
    require_name(request, StorePath.parse_basename(drv).name, f"read the build log of {drv}")
    record = await fetch_record(net, log_record_key(drv))
    if record.metadata != log_metadata(drv):
        raise NotFoundError(f"no build log of {drv}")
    plan = None if request.method == "HEAD" else await plan_fetch(net, record.manifest)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                       "Content-Length": str(record.manifest.size)})
    if plan is None:
        await start_answer(request, resp)
        return resp
    pieces = payload_pieces(net, plan, request.app[CONFIG].prefetch)
    return await send_body(request, resp, pieces, f"log/{drv}")


@checks_names
async def put_log(request: web.Request) -> web.Response:
    """Store the uploaded build log."""
    uploads = request.app[CONFIG].uploads
    staging = request.app[STAGING]
    name = f"log-{uuid.uuid4().hex}"
    try:
        if uploads is None:
            raise ForbiddenError("uploads are disabled on this gateway")
        drv = parse_drv_name(request.match_info["drv"])
        require_name(request, StorePath.parse_basename(drv).name,
                     f"upload the build log of {drv}")
        path = await staging.receive(request, name, min(uploads.max_bytes, MAX_LOG_BYTES))
        size = await store_log(request.app[NETWORK], uploads.publisher, drv, path)
    finally:
        staging.remove(name)
    log.info("stored the build log of %s (%d bytes)", drv, size)
    return web.Response(status=201, text="stored\n")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD``/``PUT /log/{drv}`` on ``app``."""
    app.router.add_get("/log/{drv}", get_log)
    app.router.add_put("/log/{drv}", put_log)
