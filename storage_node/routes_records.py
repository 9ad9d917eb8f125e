"""Record endpoints: ``PUT``/``GET``/``HEAD``/``DELETE /records/{key}``.

A record key is 32 characters of ``[0-9a-z]`` (to nixshard, a store-path
hash part; the node does not need to know).  The node stores a record only
if :func:`storage_network.record.open_record` accepts it under that key
with one of the node's publisher keys, so it never holds a record an
accepted publisher did not sign.  A newer valid record may replace an
older one (atomically).

A ``GET`` counts as a use of the record: the node sets the file's atime to
now (at most once a minute), which ``GET /records`` reports as the last
read, so garbage collection can expire records nobody fetches.  A ``GET``
carrying ``X-Nixshard-Peek: 1`` (the collector's own reads) is not counted;
neither is ``HEAD``.  ``DELETE /records/{key}?sha256=HEX`` (signed over the
path with its query) deletes the record only if the stored bytes are the
ones named, so a record replaced since the collector read it survives.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from storage_network.auth import WriteClaim
from storage_network.errors import RecordError
from storage_network.node_client import PEEK_HEADER
from storage_network.record import open_record

from .appkeys import CONFIG, STORE
from .body import check_declared_length, read_body
from .errors import BadRequest, NotFound, PreconditionFailed, Unprocessable
from .expect import expect_handler
from .store import RECORD_KEY_RE, Deletion
from .write_auth import check_delete, check_write, precheck_write

log = logging.getLogger("nixshard.node")
_SHA256_RE = re.compile(r"\A[0-9a-fA-F]{64}\Z")
_RECORD_HEADERS = {"Content-Type": "application/octet-stream", "Cache-Control": "no-cache"}


def _parse_key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not RECORD_KEY_RE.fullmatch(key):
        raise BadRequest(f"bad record key {key[:80]!r}: want 32 characters of [0-9a-z]")
    return key


def _precheck_put(request: web.Request) -> tuple[str, WriteClaim]:
    key = _parse_key(request)
    claim = precheck_write(request)
    check_declared_length(request, request.app[CONFIG].max_record_bytes, "record")
    return key, claim


async def put_record(request: web.Request) -> web.Response:
    """Store a signed record.

    Answers 201 (new), 200 (replaced an existing record), 400 (bad key,
    truncated body), 401 (no signature), 403 (signature refused), 413 (body
    over ``max_record_bytes``), 422 (record malformed, signed by a key the
    node does not accept, or signed for another key).
    """
    config, store = request.app[CONFIG], request.app[STORE]
    key, claim = _precheck_put(request)
    body, digest = await read_body(request, config.max_record_bytes, "record")
    publisher = check_write(request, claim, f"/records/{key}", digest)
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


async def get_record(request: web.Request) -> web.Response:
    """Send a stored record's bytes (``HEAD``: headers only); 404 absent, 400 bad key.

    A ``GET`` without ``X-Nixshard-Peek: 1`` sets the record's atime to now
    (when it is more than a minute old).
    """
    key = _parse_key(request)
    count = request.method == "GET" and request.headers.get(PEEK_HEADER) != "1"
    data = await request.app[STORE].read_record(key, count_access=count)
    if data is None:
        raise NotFound(f"no record {key}")
    return web.Response(body=data, headers=_RECORD_HEADERS)


def _parse_sha256(request: web.Request) -> bytes:
    values = request.query.getall("sha256", [])
    if len(values) != 1 or not _SHA256_RE.fullmatch(values[0]):
        shown = values[0][:80] if values else ""
        raise BadRequest(f"delete needs exactly one ?sha256=<64 hex digits>, got {shown!r}")
    return bytes.fromhex(values[0])


async def delete_record(request: web.Request) -> web.Response:
    """Delete a record if its stored bytes have the SHA-256 ``?sha256=HEX``.

    Signed over the path with its query (``/records/<key>?sha256=HEX``).
    Answers 204 (deleted), 404 (absent), 412 (the stored record is another
    one: replaced since), 400 (bad key, missing or bad ``sha256``), 401/403
    (signature missing or refused).
    """
    store = request.app[STORE]
    key = _parse_key(request)
    sha256 = _parse_sha256(request)
    publisher = await check_delete(request)
    outcome = await store.delete_record(key, sha256)
    if outcome is Deletion.ABSENT:
        raise NotFound(f"no record {key}")
    if outcome is Deletion.KEPT:
        raise PreconditionFailed(f"record {key} is not the one with sha256 {sha256.hex()}; kept")
    log.info("deleted record %s for publisher %s", key, publisher.name)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the record routes on ``app``."""
    app.router.add_put("/records/{key}", put_record,
                       expect_handler=expect_handler(_precheck_put))
    app.router.add_get("/records/{key}", get_record)
    app.router.add_delete("/records/{key}", delete_record)
