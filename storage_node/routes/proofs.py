"""``POST /proofs``: answer a storage challenge (see :mod:`storage_network.wire.proofs`).

Body: ``{"nonce": "<32-128 hex digits>", "ids": [shard id, ...]}`` (at most
1000 ids, 256 KiB).  The node reads every listed shard from disk and
answers, per id in request order, "absent" or the challenged blocks with
their Merkle paths (binary, ``application/octet-stream``).  The proof is
built from the stored bytes as they are: a shard that rotted on disk yields
a proof that fails, so the auditor sees it.

Refusals: 400 on malformed JSON (or JSON nested too deeply), a missing
or malformed nonce (16-64 bytes as hex), ``ids`` not a list of shard ids,
or more than 1000 ids; 413 on a body over 256 KiB.  Reads are open, as every read of a node is.

A node with a key signs the answer when asked (:mod:`storage_node.answer_signing`),
so a failed proof is signed evidence against it.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from storage_network.errors import ShardProofError
from storage_network.wire.proofs import MAX_IDS, MAX_NONCE_BYTES, MIN_NONCE_BYTES, answer_entry
from storage_network.wire.stripe import parse_shard_id

from ..answer_signing import answer_headers
from ..appkeys import STORE
from ..body import json_type, parse_json, read_body
from ..errors import BadRequest
from ..store import Store

log = logging.getLogger("nixshard.node")

MAX_PROOF_BODY_BYTES = 256 * 1024
_NONCE_RE = re.compile(r"\A(?:[0-9a-fA-F]{2})+\Z")


def _parse_request(body: bytes | bytearray) -> tuple[bytes, list[str]]:
    doc = parse_json(body, "proof request")
    if not isinstance(doc, dict):
        raise BadRequest('proof request body must be {"nonce": hex, "ids": [shard id, ...]}')
    nonce_text, ids = doc.get("nonce"), doc.get("ids")
    if not isinstance(nonce_text, str):
        raise BadRequest('proof request needs "nonce": 16 to 64 bytes as hex')
    if not (_NONCE_RE.fullmatch(nonce_text)
            and MIN_NONCE_BYTES <= len(nonce_text) // 2 <= MAX_NONCE_BYTES):
        raise BadRequest(f"bad nonce {nonce_text[:140]!r}: want {MIN_NONCE_BYTES} to "
                         f"{MAX_NONCE_BYTES} bytes as hex digits")
    nonce = bytes.fromhex(nonce_text)
    if not isinstance(ids, list):
        raise BadRequest('proof request needs "ids": [shard id, ...]')
    if len(ids) > MAX_IDS:
        raise BadRequest(f"proof request lists {len(ids)} ids, at most {MAX_IDS} allowed")
    for item in ids:
        if not isinstance(item, str):
            raise BadRequest(f"bad shard id: a JSON {json_type(item)}, not a string")
        try:
            parse_shard_id(item)
        except ShardProofError as exc:
            raise BadRequest(str(exc)) from exc
    return nonce, ids


def _answer(store: Store, nonce: bytes, ids: list[str]) -> bytes:
    """Read each shard and build the answer (blocking: runs on a thread)."""
    parts = []
    for sid in ids:
        try:
            body: bytes | None = store.shard_path(sid).read_bytes()
        except FileNotFoundError:
            body = None
        except OSError as exc:
            log.error("cannot read shard %s for a proof, answering absent: %s", sid, exc)
            body = None
        parts.append(answer_entry(nonce, sid, body))
    return b"".join(parts)


async def post_proofs(request: web.Request) -> web.Response:
    """Answer a storage challenge for the listed shards (see the module docstring)."""
    body, digest = await read_body(request, MAX_PROOF_BODY_BYTES, "proof request")
    nonce, ids = _parse_request(body)
    answer = await asyncio.to_thread(_answer, request.app[STORE], nonce, ids)
    return web.Response(body=answer, content_type="application/octet-stream",
                        headers={"Cache-Control": "no-store",
                                 **answer_headers(request, "/proofs", digest, 200, answer)})


def setup(app: web.Application) -> None:
    """Register the proof routes on ``app``."""
    app.router.add_post("/proofs", post_proofs)
