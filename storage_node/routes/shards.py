"""Shard endpoints: ``PUT``/``GET``/``HEAD``/``DELETE /shards/{id}``, ``POST /shards/has``
and the batched ``POST /shards/batch-get`` / ``POST /shards/batch-put``
(wire format: :mod:`storage_network.wire.shard_batch`).

A shard id is ``<64 hex stripe root>.<index 0-255>``; the node checks on
write that the body's Merkle proof leads from the fragment to that root
(:func:`storage_network.wire.stripe.verify_shard`), so it stores only shards
that match their ids.  Shards are immutable: a second PUT of a stored id
answers 200 and leaves the stored bytes as they are, but sets the file's
mtime to now -- unless the stored bytes no longer match the id (rot,
tampering): a signed PUT of good bytes then replaces them (201,
``"healed": true``; logged, counted in ``nixshard_node_shards_healed_total``).
This is how repair heals corruption.

The mtime is the garbage collector's clock (see :mod:`storage_network.upkeep.gc`):
a signed ``POST /shards/has`` with ``"touch": true`` sets it on every listed
shard the node holds, and ``DELETE /shards/{id}?before=T`` (signed over the
path with its query) deletes a shard only if its mtime is earlier than T,
atomically with respect to touches and PUTs of it; it needs a key with the
maintainer role (:mod:`storage_node.write_auth`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from http_serving.errors import start_answer
from storage_network.errors import ShardBatchError, ShardProofError, ShardTooLargeError
from storage_network.wire.shard_batch import MAX_BATCH_IDS, encode_get_answer, parse_put_batch
from storage_network.wire.stripe import parse_shard_id, verify_shard
from storage_network.wire.write_auth import WriteClaim

from ..answer_signing import answer_headers
from ..appkeys import CONFIG, STORE
from ..body import check_declared_length, json_type, parse_json, read_body
from ..errors import BadRequest, NotFound, PayloadTooLarge, PreconditionFailed, Unprocessable
from ..expect import expect_handler
from ..faults import mangle_shard, trickle_write
from ..shard_store import ShardWrite
from ..store import Store
from ..store_layout import Deletion
from ..usage import Reservation
from ..write_auth import check_delete, check_write, precheck_write

log = logging.getLogger("nixshard.node")

MAX_HAS_IDS = MAX_BATCH_IDS
MAX_HAS_BODY_BYTES = 2 * 1024 * 1024
MAX_BATCH_PUT_BYTES = 64 * 1024 * 1024
BATCH_READ_GROUP = 16  # shard files read per thread hop
_DONE = {ShardWrite.NEW: "stored", ShardWrite.HELD: "already had",
         ShardWrite.HEALED: "healed (replaced corrupt bytes of)"}
_SHARD_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Cache-Control": "public, max-age=31536000, immutable",
}


def _parse_id(text: str) -> tuple[bytes, int]:
    try:
        return parse_shard_id(text)
    except ShardProofError as exc:
        raise BadRequest(str(exc)) from exc


def _precheck_put(request: web.Request) -> tuple[str, bytes, int, WriteClaim]:
    shard_id = request.match_info["id"]
    root, index = _parse_id(shard_id)
    claim = precheck_write(request)
    check_declared_length(request, request.app[CONFIG].max_shard_bytes, "shard")
    return shard_id, root, index, claim


async def put_shard(request: web.Request) -> web.Response:
    """Store a shard.

    Answers 201 (stored, or ``"healed"``: replaced stored bytes that no
    longer matched the id), 200 (already stored), 400 (bad id, truncated
    body), 401 (no signature), 402 (the shard would take the publisher past
    its quota, :mod:`storage_node.usage`), 403 (signature refused), 408 (body stalled),
    413 (body over ``max_shard_bytes``), 422 (proof does not match the id),
    503 (no room in the body budget).  The body goes to a temp file that is
    deleted on any refusal.
    """
    config, store = request.app[CONFIG], request.app[STORE]
    shard_id, root, index, claim = _precheck_put(request)
    with store.new_temp() as temp:
        body, digest = await read_body(request, config.max_shard_bytes, "shard", temp.write)
        publisher = check_write(request, claim, f"/shards/{shard_id}", digest)
        try:
            await asyncio.to_thread(verify_shard, root, index, memoryview(body),
                                        check_blocks=True)
        except ShardProofError as exc:
            raise Unprocessable(f"shard does not match its id: {exc}") from exc
        with await _reserve(request, store, publisher.name, [(shard_id, len(body))]) as payer:
            outcome = await store.commit_shard(temp, shard_id, payer)
    log.info("%s shard %s (%d bytes) for publisher %s", _DONE[outcome], shard_id, len(body),
             publisher.name)
    created = outcome is not ShardWrite.HELD
    return web.json_response({"id": shard_id, "created": created,
                              "healed": outcome is ShardWrite.HEALED, "bytes": len(body)},
                             status=201 if created else 200)


async def get_shard(request: web.Request) -> web.StreamResponse:
    """Send a stored shard's exact bytes (``HEAD``: headers only); 404 absent, 400 bad id."""
    shard_id = request.match_info["id"]
    _parse_id(shard_id)
    path = request.app[STORE].shard_path(shard_id)
    if not path.is_file():
        raise NotFound(f"no shard {shard_id}")
    response = _SentFile(path, headers=_SHARD_HEADERS)
    # sent here, not after the handler: a client gone mid-file reaches the error middleware
    await start_answer(request, response)
    return response


class _SentFile(web.FileResponse):
    """A :class:`aiohttp.web.FileResponse` that may be sent by its handler: preparing it
    again (aiohttp does, after the handler) does nothing."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


async def _id_list(request: web.Request, what: str) -> tuple[list[str], bytes, bool]:
    """The validated ``ids`` (and ``touch`` flag) of a JSON ``{"ids": [...]}`` body,
    with the body's SHA-256.

    Raises:
        BadRequest: malformed JSON, a bad id, a non-boolean touch, too many ids.
        PayloadTooLarge: a body over 2 MiB.
    """
    body, digest = await read_body(request, MAX_HAS_BODY_BYTES, what)
    ids, touch = parse_id_list(body, what)
    return ids, digest, touch


def parse_id_list(body: bytes | bytearray, what: str) -> tuple[list[str], bool]:
    """The validated ``ids`` and ``touch`` flag of a JSON ``{"ids": [...], "touch": bool}``
    body (``touch`` optional, False).

    Raises:
        BadRequest: not JSON (or nested too deeply), not an object, ``ids`` not a list
            of at most :data:`MAX_HAS_IDS` shard ids, a non-boolean ``touch``.
    """
    doc = parse_json(body, what)
    if not isinstance(doc, dict):
        raise BadRequest(f'{what} body must be {{"ids": [shard id, ...]}}, '
                         f"not a JSON {json_type(doc)}")
    ids = doc.get("ids")
    if not isinstance(ids, list):
        raise BadRequest(f'{what} body must be {{"ids": [shard id, ...]}}')
    touch = doc.get("touch", False)
    if not isinstance(touch, bool):
        raise BadRequest(f"{what}: touch must be true or false, not a JSON {json_type(touch)}")
    if len(ids) > MAX_HAS_IDS:
        raise BadRequest(f"{what} lists {len(ids)} ids, at most {MAX_HAS_IDS} allowed")
    for item in ids:
        if not isinstance(item, str):
            raise BadRequest(f"bad shard id: a JSON {json_type(item)}, not a string")
        _parse_id(item)
    return ids, touch


async def batch_get(request: web.Request) -> web.StreamResponse:
    """Send many stored shards in one answer (format: :mod:`storage_network.wire.shard_batch`).

    Body ``{"ids": [...]}`` (at most 10000 ids, 2 MiB).  The answer streams
    the shards in request order as they are read, a marker for each one not
    held.  400 on malformed JSON or any bad id, 413 on a body over 2 MiB.
    """
    ids, _, _ = await _id_list(request, "batch-get request")
    store, faults = request.app[STORE], request.app[CONFIG].faults
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await start_answer(request, resp)
    for start in range(0, len(ids), BATCH_READ_GROUP):
        bodies = await asyncio.to_thread(store.read_shards, ids[start:start + BATCH_READ_GROUP])
        frames = []
        for body in bodies:
            if body is not None and (faults.flip or faults.short):  # TEST-ONLY faults
                body = mangle_shard(body, faults)
            frames.append(encode_get_answer(body))
        if faults.trickle is not None:  # TEST-ONLY fault
            await trickle_write(resp, b"".join(frames), faults.trickle)
        else:
            await resp.write(b"".join(frames))
    await resp.write_eof()
    return resp


async def _reserve(request: web.Request, store: Store, publisher: str,
                   shards: list[tuple[str, int]]) -> Reservation:
    """Hold ``publisher``'s quota for the shards of ``shards`` (id, bytes) the node
    does not hold yet (a shard held costs nothing).

    Raises:
        OverQuota: they would take the publisher past its quota (402).
    """
    held = set(await store.present_shards([sid for sid, _ in shards]))
    need = sum(size for sid, size in shards if sid not in held)
    return store.usage.reserve(publisher, need, request.app[CONFIG].node_id)


def _check_batch(data: bytearray, max_shard_bytes: int) -> list[tuple[str, memoryview]]:
    """Parse a batch-put body and check every shard against its id (blocking)."""
    shards = list(parse_put_batch(data, max_shard_bytes))
    for sid, body in shards:
        root, index = parse_shard_id(sid)
        try:
            verify_shard(root, index, body, check_blocks=True)
        except ShardProofError as exc:
            raise ShardProofError(f"shard {sid}: {exc}") from exc
    return shards


async def batch_put(request: web.Request) -> web.Response:
    """Store many shards from one signed body; all of them or none.

    Answers 200 ``{"created": [ids], "held": [ids], "healed": [ids]}``
    (``created`` lists every shard written, the ``healed`` ones included:
    held bytes that no longer matched their id, replaced); 400 (malformed
    batch, bad id, truncated body), 401/403 (signature missing or refused),
    402 (the new shards would take the publisher past its quota), 408 (body
    stalled), 413 (body over 64 MiB or a shard over ``max_shard_bytes``), 422
    (a shard does not match its id), 503 (no room in the body budget).
    Nothing is stored on any refusal.
    """
    config, store = request.app[CONFIG], request.app[STORE]
    claim = precheck_write(request)
    data, digest = await read_body(request, MAX_BATCH_PUT_BYTES, "batch-put")
    publisher = check_write(request, claim, "/shards/batch-put", digest)
    try:
        shards = await asyncio.to_thread(_check_batch, data, config.max_shard_bytes)
    except ShardProofError as exc:
        raise Unprocessable(f"shard does not match its id: {exc}") from exc
    except ShardTooLargeError as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except ShardBatchError as exc:
        raise BadRequest(f"malformed batch-put body: {exc}") from exc
    with await _reserve(request, store, publisher.name,
                        [(sid, len(body)) for sid, body in shards]) as payer:
        outcomes = await store.commit_shards(shards, payer)
    done = list(zip((sid for sid, _ in shards), outcomes, strict=True))
    new = [sid for sid, o in done if o is not ShardWrite.HELD]
    held = [sid for sid, o in done if o is ShardWrite.HELD]
    healed = [sid for sid, o in done if o is ShardWrite.HEALED]
    log.info("batch: stored %d shards (%d healed), already had %d (%d bytes) for publisher %s",
             len(new), len(healed), len(held), len(data), publisher.name)
    return web.json_response({"created": new, "held": held, "healed": healed})


async def post_has(request: web.Request) -> web.Response:
    """Answer which of the listed shards are stored; optionally touch them.

    Body: ``{"ids": [shard id, ...], "touch": bool}`` (at most 10000 ids,
    2 MiB; ``touch`` optional).  Answer: ``{"present": [the stored ones, in
    request order]}``.  With ``"touch": true`` the request must be signed by
    an accepted publisher (over the path ``/shards/has``) and the node sets
    the mtime of every present one to now.
    400 on malformed JSON, any bad id or a non-boolean touch, 401/403 on a
    touch without an accepted signature, 413 on a body over 2 MiB.  A node with a
    key signs the answer when asked (:mod:`storage_node.answer_signing`).
    """
    claim = precheck_write(request) if "Authorization" in request.headers else None
    ids, digest, touch = await _id_list(request, "has request")
    publisher = None
    if touch:
        if claim is None:
            claim = precheck_write(request)
        publisher = check_write(request, claim, "/shards/has", digest)
    store = request.app[STORE]
    if publisher is None:
        present = await store.present_shards(ids)
    else:
        present = await store.touch_shards(ids)
        log.info("touched %d of %d shards for publisher %s", len(present), len(ids),
                 publisher.name)
    answer = json.dumps({"present": present}).encode()
    return web.Response(body=answer, content_type="application/json",
                        headers=answer_headers(request, "/shards/has", digest, 200, answer))


def _parse_before(request: web.Request) -> float:
    values = request.query.getall("before", [])
    if len(values) != 1:
        raise BadRequest("delete needs exactly one ?before=<unix seconds>")
    try:
        before = float(values[0])
    except ValueError as exc:
        raise BadRequest(f"before={values[0][:40]!r} is not a number of unix seconds") from exc
    if not math.isfinite(before) or before < 0:
        raise BadRequest(f"before={values[0][:40]!r} is not a number of unix seconds")
    return before


async def delete_shard(request: web.Request) -> web.Response:
    """Delete a shard unless it was written or touched at or after ``?before=T``.

    Signed over the path with its query (``/shards/<id>?before=T``).
    Answers 204 (deleted), 404 (absent), 412 (mtime >= T: a push wrote or
    touched it since the collector looked), 400 (bad id, missing or bad
    ``before``), 401/403 (signature missing or refused; 403 also for a key
    without the maintainer role).
    """
    store = request.app[STORE]
    shard_id = request.match_info["id"]
    _parse_id(shard_id)
    before = _parse_before(request)
    publisher = await check_delete(request)
    outcome = await store.delete_shard(shard_id, before)
    if outcome is Deletion.ABSENT:
        raise NotFound(f"no shard {shard_id}")
    if outcome is Deletion.KEPT:
        raise PreconditionFailed(f"shard {shard_id} was written or touched at or after "
                                 f"{before:.3f}; kept")
    log.info("deleted shard %s (older than %.3f) for publisher %s", shard_id, before,
             publisher.name)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the shard routes on ``app``."""
    app.router.add_post("/shards/has", post_has)
    app.router.add_post("/shards/batch-get", batch_get)
    app.router.add_post("/shards/batch-put", batch_put)
    app.router.add_put("/shards/{id}", put_shard, expect_handler=expect_handler(_precheck_put))
    app.router.add_get("/shards/{id}", get_shard)
    app.router.add_delete("/shards/{id}", delete_shard)
