"""Record endpoints: ``PUT``/``GET``/``HEAD /records/{key}``.

A record key is 32 characters of ``[0-9a-z]`` (to nixshard, a store-path
hash part; the node does not need to know).  The node stores a record only
if :func:`storage_network.record.open_record` accepts it under that key
with one of the node's publisher keys, so it never holds a record an
accepted publisher did not sign.  A newer valid record may replace an
older one (atomically).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from storage_network.errors import RecordError
from storage_network.record import open_record

from .appkeys import CONFIG, STORE
from .body import check_declared_length, read_body
from .errors import BadRequest, NotFound, Unprocessable
from .expect import expect_handler
from .store import RECORD_KEY_RE
from .write_auth import check_write, require_signature_headers

log = logging.getLogger("nixshard.node")


def _parse_key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not RECORD_KEY_RE.fullmatch(key):
        raise BadRequest(f"bad record key {key[:80]!r}: want 32 characters of [0-9a-z]")
    return key


def _precheck_put(request: web.Request) -> str:
    key = _parse_key(request)
    require_signature_headers(request)
    check_declared_length(request, request.app[CONFIG].max_record_bytes, "record")
    return key


async def put_record(request: web.Request) -> web.Response:
    """Store a signed record.

    Answers 201 (new), 200 (replaced an existing record), 400 (bad key,
    truncated body), 401 (no signature), 403 (signature refused), 413 (body
    over ``max_record_bytes``), 422 (record malformed, signed by a key the
    node does not accept, or signed for another key).
    """
    config, store = request.app[CONFIG], request.app[STORE]
    key = _precheck_put(request)
    body, digest = await read_body(request, config.max_record_bytes, "record")
    publisher = check_write(request, config.publishers, f"/records/{key}", digest)
    try:
        record = await asyncio.to_thread(open_record, config.publishers, key, memoryview(body))
    except RecordError as exc:
        raise Unprocessable(str(exc)) from exc
    created = await store.write_record(key, memoryview(body))
    log.info("%s record %s (%d bytes, %d chunks, signed by %s) for publisher %s",
             "stored" if created else "replaced", key, len(body), len(record.manifest.chunks),
             record.publisher.name, publisher.name)
    return web.json_response({"key": key, "created": created, "bytes": len(body)},
                             status=201 if created else 200)


async def get_record(request: web.Request) -> web.StreamResponse:
    """Send a stored record's bytes (``HEAD``: headers only); 404 absent, 400 bad key."""
    key = _parse_key(request)
    path = request.app[STORE].record_path(key)
    if not path.is_file():
        raise NotFound(f"no record {key}")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream",
                                           "Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    """Register the record routes on ``app``."""
    app.router.add_put("/records/{key}", put_record,
                       expect_handler=expect_handler(_precheck_put))
    app.router.add_get("/records/{key}", get_record)
