"""Record endpoints: ``PUT``/``GET``/``HEAD``/``DELETE /records/{key}``, ``POST
/records/batch-get``.

A record key is 32 characters of ``[0-9a-z]`` (to nixshard, a store-path
hash part; the node does not need to know).  The node stores a record only
if :func:`storage_network.wire.record.open_record` accepts it under that key
with one of the node's publisher keys, so it never holds a record an
accepted publisher did not sign.

The node keeps one version per key: a record or a tombstone (the signed
deletion of the key, :func:`storage_network.wire.record.seal_tombstone`), both
``PUT`` the same way, and a ``GET`` serves whichever is held.  Whether an
incoming version replaces the held one is
:func:`storage_network.wire.record.replacement` (the table in
``docs/consistency.md``): 201 when nothing was held, 200 for the same bytes
or a newer version that may replace it, 409 when the node holds a newer
version, or a record of another content (the first committed content
wins).  The decision and the replacement happen under the store's record
lock (:meth:`storage_node.store.Store.write_record`), so two writers of one
key cannot both win.  A held version the node can no longer open (its
publisher key was dropped, or its file rotted) does not block a valid one:
it is replaced, with a warning.

``POST /records/batch-get`` (body ``{"keys": [...]}``, at most
:data:`~storage_network.wire.shard_batch.MAX_BATCH_KEYS`) sends many records
in one answer, framed as a shard batch (:mod:`storage_network.wire.shard_batch`):
the record scans of audit, repair and gc read a page of keys per node with it
instead of one ``GET`` a key.  It is a maintenance read (no atime moves), and
its absence markers are not signed: a reader that acts on absence asks the
single ``GET``.

A ``GET`` counts as a use of the record: the node sets the file's atime to
now (at most once a minute), which ``GET /records`` reports as the last
read, so garbage collection can expire records nobody fetches.  A ``GET``
carrying ``X-Nixshard-Peek: 1`` (the collector's own reads) is not counted;
neither is ``HEAD``.  ``DELETE /records/{key}?sha256=HEX`` (signed over the
path with its query) deletes the record only if the stored bytes are the
ones named, so a record replaced since the collector read it survives.

Deleting needs the maintainer role (:mod:`storage_node.write_auth`): a
``DELETE`` signed by a key without it is refused (403), and so is a
tombstone that such a key both sealed and sent (a maintainer's tombstone
may be copied by anyone, and a maintainer may copy any tombstone).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable

from aiohttp import web

from http_serving.errors import start_answer
from storage_network.errors import RecordError
from storage_network.wire.node_http import PEEK_HEADER
from storage_network.wire.record import RECORD_KEY_RE, Record, Replacement, open_record, replacement
from storage_network.wire.shard_batch import MAX_BATCH_KEYS, encode_get_answer
from storage_network.wire.write_auth import WriteClaim

from ..answer_signing import answer_headers
from ..appkeys import CONFIG, STORE
from ..body import check_declared_length, json_type, parse_json, read_body
from ..config import NodeConfig
from ..errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unprocessable
from ..expect import expect_handler
from ..faults import read_first_record, trickle_write
from ..record_store import RecordWrite
from ..store import Store
from ..store_layout import Deletion
from ..usage import RECORD
from ..write_auth import check_delete, check_tombstone, check_write, precheck_write

log = logging.getLogger("nixshard.node")
_SHA256_RE = re.compile(r"\A[0-9a-fA-F]{64}\Z")
_EMPTY_SHA256 = hashlib.sha256(b"").digest()
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


def _held_version(config: NodeConfig, key: str, held: bytes | None) -> Record | None:
    """The held version of ``key`` as a record, None when nothing (usable) is held."""
    if held is None:
        return None
    try:
        return open_record(config.publishers, key, held)
    except RecordError as exc:
        log.warning("record %s: the held version cannot be opened (%s); a valid PUT "
                    "replaces it", key, exc)
        return None


def _decider(config: NodeConfig, key: str,
             incoming: Record) -> Callable[[bytes | None], bool]:
    """The store's ``decide`` for a PUT of ``incoming`` (see the module docstring)."""

    def decide(held_bytes: bytes | None) -> bool:
        held = _held_version(config, key, held_bytes)
        verdict = replacement(held, incoming)
        if verdict is Replacement.OLDER:
            assert held is not None
            raise Conflict(f"holds a newer version of record {key} (created {held.created}, "
                           f"{'a tombstone' if held.tombstone else 'a record'}); the PUT "
                           f"carries one created {incoming.created}: kept")
        if verdict is Replacement.CONFLICT:
            raise Conflict(f"holds another content for record {key}: the first committed "
                           f"content wins")
        return verdict is Replacement.STORE

    return decide


async def _record_need(store: Store, key: str, size: int, publisher: str) -> int:
    """Bytes a record of ``size`` bytes written by ``publisher`` under ``key`` adds to
    what ``publisher`` is charged: less what it paid for the version it replaces."""
    held = await asyncio.to_thread(store.usage.payer_of, RECORD, key)
    return max(0, size - held[1]) if held is not None and held[0] == publisher else size


async def put_record(request: web.Request) -> web.Response:
    """Store a signed record or tombstone, unless the node holds a newer version.

    Answers 201 (nothing was held: stored), 200 (the same bytes were held,
    or a version this one supersedes: replaced), 400 (bad key, truncated
    body), 401 (no signature), 402 (a record, not a tombstone, that would
    take the writer past its quota, see :mod:`storage_node.usage`), 403
    (signature refused, or a tombstone that neither its sealer nor its
    sender may delete with), 409 (the node holds a newer version, or a
    record of another content), 413 (body over
    ``max_record_bytes``), 422 (record malformed, signed by a key the node
    does not accept, or signed for another key).  The JSON answer is
    ``{"key", "created": bool, "replaced": bool, "tombstone": bool, "bytes"}``.
    """
    config, store = request.app[CONFIG], request.app[STORE]
    key, claim = _precheck_put(request)
    body, digest = await read_body(request, config.max_record_bytes, "record")
    publisher = check_write(request, claim, f"/records/{key}", digest)
    try:
        record = await asyncio.to_thread(open_record, config.publishers, key, memoryview(body))
    except RecordError as exc:
        raise Unprocessable(str(exc)) from exc
    if record.tombstone:
        check_tombstone(record.publisher, publisher)
    need = 0 if record.tombstone else await _record_need(store, key, len(body), publisher.name)
    with store.usage.reserve(publisher.name, need, config.node_id) as payer:
        outcome = await store.write_record(key, memoryview(body),
                                           _decider(config, key, record), payer)
    kind = "tombstone" if record.tombstone else "record"
    log.info("%s %s %s (%d bytes, %d chunks, created %d, signed by %s) for publisher %s",
             outcome.value, kind, key, len(body), len(record.manifest.chunks), record.created,
             record.publisher.name, publisher.name)
    created = outcome is RecordWrite.CREATED
    return web.json_response({"key": key, "created": created,
                              "replaced": outcome is RecordWrite.REPLACED,
                              "tombstone": record.tombstone, "bytes": len(body)},
                             status=201 if created else 200)


async def get_record(request: web.Request) -> web.Response:
    """Send the held version's bytes, record or tombstone (``HEAD``: headers only);
    404 absent, 400 bad key.

    A ``GET`` without ``X-Nixshard-Peek: 1`` sets the record's atime to now
    (when it is more than a minute old).  A node with a key signs a 404 when asked
    (:mod:`storage_node.answer_signing`): absence is what a reader cannot check.
    """
    key = _parse_key(request)
    count = request.method == "GET" and request.headers.get(PEEK_HEADER) != "1"
    data = await request.app[STORE].read_record(key, count_access=count)
    if data is None:
        log.debug("refused %s: 404 no record %s", request.method, key)
        absent = f"error: no record {key}"  # as the error map words a 404
        return web.Response(status=404, text=absent, headers=answer_headers(
            request, f"/records/{key}", _EMPTY_SHA256, 404, absent.encode()))
    return web.Response(body=data, headers=_RECORD_HEADERS)


BATCH_READ_GROUP = 64
"""Records a batch-get reads on one worker thread before writing their frames."""
MAX_BATCH_BODY_BYTES = 128 * 1024
"""A batch-get request body, at most (1,000 keys of JSON take about 36 KB)."""


def parse_key_list(body: bytes | bytearray, what: str) -> list[str]:
    """The validated ``keys`` of a JSON ``{"keys": [record key, ...]}`` body.

    Raises:
        BadRequest: not JSON (or nested too deeply), not an object, ``keys`` not a
            list of at most :data:`MAX_BATCH_KEYS` record keys.
    """
    doc = parse_json(body, what)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise BadRequest(f'{what} body must be {{"keys": [record key, ...]}}, '
                         f"not a JSON {json_type(doc)}")
    if len(keys) > MAX_BATCH_KEYS:
        raise BadRequest(f"{what} lists {len(keys)} keys, at most {MAX_BATCH_KEYS} allowed")
    for key in keys:
        if not isinstance(key, str) or not RECORD_KEY_RE.fullmatch(key):
            shown = key[:80] if isinstance(key, str) else f"a JSON {json_type(key)}"
            raise BadRequest(f"{what}: bad record key {shown!r}: want 32 characters of "
                             "[0-9a-z]")
    return keys


def _first_records(store: Store, keys: list[str]) -> list[bytes | None]:
    """What ``stale-records`` serves for each of ``keys`` (TEST-ONLY; blocking)."""
    return [read_first_record(store, key) for key in keys]


async def batch_get_records(request: web.Request) -> web.StreamResponse:
    """Send many held records in one answer, in the order asked (module docstring);
    400 on malformed JSON or a bad key, 413 on a body over
    :data:`MAX_BATCH_BODY_BYTES`."""
    what = "record batch-get request"
    body, _ = await read_body(request, MAX_BATCH_BODY_BYTES, what)
    keys = parse_key_list(body, what)
    store, faults = request.app[STORE], request.app[CONFIG].faults
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await start_answer(request, resp)
    for start in range(0, len(keys), BATCH_READ_GROUP):
        group = keys[start:start + BATCH_READ_GROUP]
        records = await store.read_records(group)
        if faults.stale_records:  # TEST-ONLY fault
            firsts = await asyncio.to_thread(_first_records, store, group)
            records = [first or data for first, data in zip(firsts, records, strict=True)]
        frames = b"".join(encode_get_answer(data) for data in records)
        if faults.trickle is not None:  # TEST-ONLY fault
            await trickle_write(resp, frames, faults.trickle)
        else:
            await resp.write(frames)
    await resp.write_eof()
    return resp


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
    (signature missing or refused; 403 also for a key without the maintainer
    role).
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
    app.router.add_post("/records/batch-get", batch_get_records)
    app.router.add_delete("/records/{key}", delete_record)
