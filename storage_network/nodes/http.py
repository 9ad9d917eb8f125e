"""Our storage node (:mod:`storage_node`) as a :class:`~storage_network.nodes.base.NodeStore`,
over HTTP (the node API is in :mod:`storage_network.wire.node_http`).

Every answer is hostile input.  Each read is capped by what the protocol
allows for that answer (a shard by its stripe's shard size, a ``has``
answer by the ids asked, a record by :data:`~storage_network.wire.record.MAX_RECORD_BYTES`,
and so on); JSON is parsed defensively (deep nesting, wrong types).  Past
4 MiB an answer takes room from the client's :class:`AnswerBudget` (64 MiB
shared by every node), so endless answers from a few hostile nodes add
at most that much to the client's memory.

Timeouts measure the node, not the client (see
:class:`~storage_network.nodes.limits.RequestGate`): a
request first takes one of the node's ``slots`` (the time it waits there
is the client's own queue, observed in ``nixshard_node_queue_seconds``),
and its deadlines start only then.  When a deadline passes while the
client's event loop was itself stalled (:class:`LoopLag`), the timeout is
blamed on the client (:attr:`NodeTimeoutError.blame` ``"client"``) and
must not count against the node.

Every failure other than "absent" raises a :class:`~storage_network.errors.NodeError`
naming the node: :class:`~storage_network.errors.NodeTimeoutError`,
:class:`~storage_network.errors.NodeStatusError` (an error status),
:class:`~storage_network.errors.NodeAnswerError` (malformed or oversized
answer), or the base class (connection refused or reset).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from storage_network.config import NodeInfo
from storage_network.errors import (
    NodeAnswerError,
    NodeError,
    NodeStatusError,
    ShardBatchError,
)
from storage_network.nodes.base import GatedNode
from storage_network.nodes.limits import (
    RECORD_BATCH_ANSWER_BYTES,
    RECORD_FREE_BYTES,
    SMALL_ANSWER_BYTES,
    AnswerBudget,
    Deadlines,
    Exchange,
    LoopLag,
    RequestGate,
)
from storage_network.wire.listing import (
    MAX_LISTING_ENTRIES,
    MAX_LISTING_LINE,
    ListedRecord,
    ListedShard,
    ListingLines,
)
from storage_network.wire.node_answer_auth import AnswerCheck, SignedAnswer, answer_check
from storage_network.wire.node_http import HAS_BATCH, PEEK_HEADER
from storage_network.wire.proofs import max_answer_bytes
from storage_network.wire.record import MAX_RECORD_BYTES
from storage_network.wire.shard_batch import (
    MAX_BATCH_IDS,
    MAX_BATCH_KEYS,
    encode_put_batch,
    parse_get_answer,
)
from storage_network.wire.write_auth import Publisher, sign_write


def parse_json_answer(node_id: str, what: str, data: bytes | bytearray) -> dict[str, Any]:
    """A node's JSON object answer.

    Raises:
        NodeAnswerError: not UTF-8 JSON, nested too deeply to parse, or not an object.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise NodeAnswerError(f"node {node_id}: {what}: answer is not JSON "
                              f"({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise NodeAnswerError(f"node {node_id}: {what}: answer is not a JSON object")
    return doc


def _id_list(node_id: str, what: str, doc: dict[str, Any], field: str,
             asked: set[str] | None = None) -> list[str]:
    """``doc[field]`` as a list of strings (each one of ``asked`` when given)."""
    items = doc.get(field)
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise NodeAnswerError(f"node {node_id}: {what}: {field!r} is not a list of ids")
    if asked is not None and not asked.issuperset(items):
        raise NodeAnswerError(f"node {node_id}: {what}: answer names ids that were not asked")
    return items


class NodeClient(GatedNode):
    """Our HTTP storage node, talked to over a shared :class:`aiohttp.ClientSession`
    (a :class:`~storage_network.nodes.base.NodeStore`).

    Args:
        info: the node's id and base URL.
        session: a session owned by the caller (connection reuse); its
            connector must allow at least ``slots`` connections to the node.
        timeout: seconds; shorthand for ``Deadlines.within(timeout)``.
        deadlines: per-phase deadlines (overrides ``timeout``).
        slots: requests to this node at once; more wait in the client, their
            deadlines not yet running.
        lag: the client's event-loop watcher (None: every timeout is the node's).
        budget: the memory budget of answers shared by the client's nodes
            (None: a budget of this node's own).
    """

    def __init__(self, info: NodeInfo, session: aiohttp.ClientSession, timeout: float = 30.0,
                 *, deadlines: Deadlines | None = None, slots: int = 16,
                 lag: LoopLag | None = None, budget: AnswerBudget | None = None):
        self.info = info
        self._session = session
        self.deadlines = deadlines or Deadlines.within(timeout)
        self.gate = RequestGate(info.id, self.deadlines, slots, lag, budget or AnswerBudget())
        d = self.deadlines
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None,
                                              sock_connect=d.connect,
                                              sock_read=max(d.first_byte, d.stall))

    async def close(self) -> None:
        """Nothing of its own to release: the session belongs to the caller."""

    async def _request(self, method: str, path: str, *, limit: int,
                       body: bytes | None = None, json_body: Any = None,
                       publisher: Publisher | None = None, ok: tuple[int, ...] = (200,),
                       headers: dict[str, str] | None = None,
                       consume: Callable[[bytes], None] | None = None,
                       free: int | None = None,
                       check: AnswerCheck | None = None) -> tuple[int, bytes]:
        """One request; returns the status and the answer (at most ``limit`` bytes).

        With ``consume``, a successful answer is passed to it piece by piece
        instead of being kept (the returned bytes are then empty).  ``free``:
        bytes of the answer held without reserving from the client's
        :class:`AnswerBudget` (never more than the budget's ``free``, its default).
        ``check``: the answer must be signed by the node
        (:mod:`storage_network.wire.node_answer_auth`); its nonce is sent.

        Raises:
            NodeTimeoutError, NodeStatusError, NodeAnswerError, NodeError.
        """
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if publisher is not None:
            digest = hashlib.sha256(body or b"").digest()
            headers.update(sign_write(publisher, self.id, method, path, digest))
        if check is not None:
            headers.update(check.headers)
        what = f"{method} {path}"
        async with self.gate.exchange(what, free) as ex:
            try:
                async with asyncio.timeout(self.deadlines.first_byte + self.deadlines.connect):
                    resp = await self._session.request(
                        method, self.info.url + path, data=body, headers=headers,
                        timeout=self._timeout, allow_redirects=False)
                ex.phase = "answer"
                async with resp:
                    good = resp.status in ok
                    answer = await self._read(resp, limit if good else 4096, what,
                                              consume if good else None, ex)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise NodeError(f"node {self.id}: {what} failed: "
                                f"{type(exc).__name__} {exc}"[:400]) from None
        if resp.status not in ok:
            text = answer[:200].decode("utf-8", "replace").strip()
            raise NodeStatusError(f"node {self.id}: {what} -> {resp.status} {text}",
                                  resp.status)
        if check is not None:
            check(resp.status, answer, resp.headers)
        return resp.status, answer

    async def _read(self, resp: aiohttp.ClientResponse, limit: int, what: str,
                    consume: Callable[[bytes], None] | None, ex: Exchange) -> bytes:
        """The answer's body, at most ``limit`` bytes (with ``consume``: passed on
        piece by piece, and ``b""`` returned).

        Pieces are taken as the connection delivered them (``readany``: no
        slicing) and joined once at the end, so the body is copied once.
        """
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise NodeAnswerError(f"node {self.id}: {what}: answer of {declared} "
                                  f"bytes, at most {limit} expected")
        pieces: list[bytes] = []
        got = 0
        while True:
            piece = await resp.content.readany()
            if not piece:
                break
            got += len(piece)
            if got > limit:
                raise NodeAnswerError(f"node {self.id}: {what}: answer over {limit} bytes")
            if consume is None:
                await ex.hold(got)
                pieces.append(piece)
            else:
                consume(piece)
        if declared is not None and got != declared:
            raise NodeError(f"node {self.id}: {what}: answer cut short "
                            f"({got} of {declared} bytes)")
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def put_shard(self, shard_id: str, body: bytes, publisher: Publisher) -> bool:
        """Store a shard body; True if the node did not hold it before."""
        status, _ = await self._request("PUT", f"/shards/{shard_id}", body=body,
                                        publisher=publisher, ok=(200, 201),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 201

    async def get_shard(self, shard_id: str, limit: int) -> bytes | None:
        """The stored shard body (at most ``limit`` bytes, see
        :func:`storage_network.wire.stripe.max_shard_bytes`), or None when the node
        says it has none (404)."""
        status, data = await self._request("GET", f"/shards/{shard_id}", ok=(200, 404),
                                           limit=limit)
        return data if status == 200 else None

    async def get_shards(self, shard_ids: list[str], limits: list[int]
                         ) -> list[memoryview | None]:
        """The stored bodies of ``shard_ids`` in one request per 10000 ids (None: not
        held), as views into the answer; ``limits[i]`` caps body i (bytes).

        Raises:
            NodeError: the request failed; NodeAnswerError: the answer is
            malformed, oversized, or a body is larger than its limit.
        """
        bodies: list[memoryview | None] = []
        for start in range(0, len(shard_ids), MAX_BATCH_IDS):
            batch = shard_ids[start:start + MAX_BATCH_IDS]
            caps = limits[start:start + MAX_BATCH_IDS]
            _, data = await self._request("POST", "/shards/batch-get", json_body={"ids": batch},
                                          limit=sum(caps) + 4 * len(batch))
            try:
                got = parse_get_answer(data, len(batch))
            except ShardBatchError as exc:
                raise NodeAnswerError(f"node {self.id}: POST /shards/batch-get: {exc}") from None
            for sid, body, cap in zip(batch, got, caps, strict=True):
                if body is not None and len(body) > cap:
                    raise NodeAnswerError(f"node {self.id}: POST /shards/batch-get: shard "
                                          f"{sid[:20]} of {len(body)} bytes, at most {cap}")
            bodies += got
        return bodies

    async def put_shards(self, shards: list[tuple[str, bytes]], publisher: Publisher
                         ) -> set[str]:
        """Store ``(shard id, body)`` pairs in one signed request; the ids that were new.

        Raises:
            NodeError: the node refused or did not store the batch.
        """
        _, data = await self._request("POST", "/shards/batch-put",
                                      body=encode_put_batch(shards), publisher=publisher,
                                      limit=SMALL_ANSWER_BYTES)
        what = "POST /shards/batch-put"
        doc = parse_json_answer(self.id, what, data)
        return set(_id_list(self.id, what, doc, "created", {sid for sid, _ in shards}))

    async def has(self, shard_ids: list[str], touch: Publisher | None = None) -> set[str]:
        """The subset of ``shard_ids`` the node claims to hold.

        Args:
            touch: a publisher about to reference these shards: the node then
                also sets their mtime to now, so a garbage collection running
                meanwhile keeps them (see :mod:`storage_network.upkeep.gc`).

        Raises:
            NodeError: the request failed; NodeAnswerError: the answer is
                malformed, oversized or names ids not asked;
                :class:`~storage_network.wire.node_answer_auth.UnsignedAnswerError`
                (a NodeAnswerError): the node's entry names a key and the answer
                is not signed by it.
        """
        present: set[str] = set()
        for start in range(0, len(shard_ids), HAS_BATCH):
            batch = shard_ids[start:start + HAS_BATCH]
            limit = 64 + sum(len(s) + 4 for s in batch)
            body = json.dumps({"ids": batch, "touch": True} if touch is not None
                              else {"ids": batch}).encode()
            _, data = await self._request("POST", "/shards/has", body=body, publisher=touch,
                                          limit=limit,
                                          headers={"Content-Type": "application/json"},
                                          check=self._answer_check("POST", "/shards/has", body,
                                                                   (200,)))
            doc = parse_json_answer(self.id, "POST /shards/has", data)
            present.update(_id_list(self.id, "POST /shards/has", doc, "present", set(batch)))
        return present

    async def delete_shard(self, shard_id: str, before: float, publisher: Publisher) -> bool:
        """Delete a shard unless it was written or touched at or after ``before`` (unix s).

        Returns:
            True if deleted; False if absent or kept because it is recent (412).
        """
        status, _ = await self._request("DELETE", f"/shards/{shard_id}?before={before:.3f}",
                                        publisher=publisher, ok=(204, 404, 412),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 204

    async def _listing(self, path: str, fields: int, after: str, limit: int | None
                       ) -> list[list[str]]:
        """The rows of a listing page, parsed while it arrives (:class:`ListingLines`).

        Raises:
            NodeAnswerError: a malformed or oversized listing (more rows than ``limit``).
        """
        most = MAX_LISTING_ENTRIES if limit is None else limit
        query = {"after": after} if after else {}
        if limit is not None:
            query["limit"] = str(limit)
        if query:
            path = f"{path}?{urlencode(query)}"
        lines = ListingLines(self.id, f"GET {path}", fields, most)
        await self._request("GET", path, limit=most * MAX_LISTING_LINE, consume=lines.feed)
        return lines.finish()

    async def list_shards(self, after: str = "", limit: int | None = None
                          ) -> list[ListedShard]:
        """The shards the node lists past ``after``, at most ``limit`` (``GET /shards``)."""
        rows = await self._listing("/shards", 3, after, limit)
        try:
            return [ListedShard(i, int(s), float(t)) for i, s, t in rows]
        except ValueError as exc:
            raise NodeAnswerError(f"node {self.id}: malformed shard listing: {exc}") from None

    async def list_records(self, after: str = "", limit: int | None = None
                           ) -> list[ListedRecord]:
        """The records the node lists past ``after``, at most ``limit`` (``GET /records``)."""
        rows = await self._listing("/records", 4, after, limit)
        try:
            return [ListedRecord(k, int(s), float(m), float(a)) for k, s, m, a in rows]
        except ValueError as exc:
            raise NodeAnswerError(f"node {self.id}: malformed record listing: {exc}") from None

    async def prove(self, nonce: bytes, shard_ids: list[str]) -> bytes:
        """The node's raw answer to a storage challenge (see :mod:`storage_network.wire.proofs`).

        When the node's entry names a key the answer must be signed by it; the signed
        answer is then kept for :meth:`signed_proof` (the audit's evidence).

        Raises:
            UnsignedAnswerError: the node's entry names a key and the answer is not
                signed by it.
        """
        body = json.dumps({"nonce": nonce.hex(), "ids": shard_ids}).encode()
        check = self._answer_check("POST", "/proofs", body, (200,))
        _, data = await self._request("POST", "/proofs", body=body,
                                      headers={"Content-Type": "application/json"},
                                      limit=max_answer_bytes(len(shard_ids)), check=check)
        if check is not None and check.signed is not None:
            self._signed_proofs[nonce] = (check.signed, body)
            while len(self._signed_proofs) > self.MAX_KEPT_PROOFS:
                del self._signed_proofs[next(iter(self._signed_proofs))]
        return data

    MAX_KEPT_PROOFS = 64
    """Signed proof answers kept for :meth:`signed_proof` (the newest)."""

    @functools.cached_property
    def _signed_proofs(self) -> dict[bytes, tuple[SignedAnswer, bytes]]:
        """Challenge nonce -> (signed answer, request body), oldest first."""
        return {}

    def signed_proof(self, nonce: bytes) -> tuple[SignedAnswer, bytes] | None:
        """The signed answer to the challenge of ``nonce`` (taken: asked once) and the
        request body it answers; None when the node's entry names no key (or the
        answer is no longer kept: the last :attr:`MAX_KEPT_PROOFS` are)."""
        return self._signed_proofs.pop(nonce, None)

    def _answer_check(self, method: str, path: str, body: bytes,
                      statuses: tuple[int, ...]) -> AnswerCheck | None:
        """The check of an answer the node must sign (None: its entry names no key)."""
        return answer_check(self.info.id, self.info.public_key, method, path, body, statuses)

    async def put_record(self, key: str, data: bytes, publisher: Publisher) -> int:
        """Store a signed record (or tombstone) under ``key``; returns the status:
        201 stored, 200 replaced or already held.

        Raises:
            NodeStatusError: with status 409 when the node holds a newer version
                or a record of another content (see :mod:`storage_network.wire.record`).
        """
        status, _ = await self._request("PUT", f"/records/{key}", body=data,
                                        publisher=publisher, ok=(200, 201),
                                        limit=SMALL_ANSWER_BYTES)
        return status

    async def get_record(self, key: str, peek: bool = False) -> bytes | None:
        """The record bytes under ``key`` (at most :data:`MAX_RECORD_BYTES`), or None
        when absent (404).

        Args:
            peek: a maintenance read (record scan: audit, gc, repair, pins): sends
                ``X-Nixshard-Peek: 1`` so the node does not count it as a use
                of the record (its last-read time stays).

        Raises:
            UnsignedAnswerError: the node's entry names a key and a 404 is not signed
                by it (a record body needs no node signature: it is signed by its
                publisher).
        """
        path = f"/records/{key}"
        status, data = await self._request("GET", path, ok=(200, 404),
                                           headers={PEEK_HEADER: "1"} if peek else None,
                                           limit=MAX_RECORD_BYTES, free=RECORD_FREE_BYTES,
                                           check=self._answer_check("GET", path, b"", (404,)))
        return data if status == 200 else None

    async def get_records(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of each record of ``keys`` in order, None where the node holds none
        (an unsigned absence: ask :meth:`get_record` before acting on it); one
        ``POST /records/batch-get`` per :data:`MAX_BATCH_KEYS` keys, a maintenance
        read (no last-read time moves).

        Raises:
            NodeError: the request failed; NodeAnswerError: the answer is malformed
                or over :data:`RECORD_BATCH_ANSWER_BYTES` (large records: read them
                one at a time).
        """
        out: list[bytes | None] = []
        what = "POST /records/batch-get"
        for start in range(0, len(keys), MAX_BATCH_KEYS):
            batch = keys[start:start + MAX_BATCH_KEYS]
            _, data = await self._request("POST", "/records/batch-get",
                                          json_body={"keys": batch},
                                          limit=RECORD_BATCH_ANSWER_BYTES)
            try:
                got = parse_get_answer(data, len(batch))
            except ShardBatchError as exc:
                raise NodeAnswerError(f"node {self.id}: {what}: {exc}") from None
            out += [None if body is None else bytes(body) for body in got]
        return out

    async def delete_record(self, key: str, sha256_hex: str, publisher: Publisher) -> bool:
        """Delete record ``key`` if the stored bytes have SHA-256 ``sha256_hex``.

        Returns:
            True if deleted; False if absent or replaced meanwhile (412).
        """
        status, _ = await self._request("DELETE", f"/records/{key}?sha256={sha256_hex}",
                                        publisher=publisher, ok=(204, 404, 412),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 204

    async def health(self) -> dict[str, Any]:
        """The node's ``/healthz`` JSON object."""
        _, data = await self._request("GET", "/healthz", limit=SMALL_ANSWER_BYTES)
        return parse_json_answer(self.id, "GET /healthz", data)
