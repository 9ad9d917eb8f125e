"""HTTP client for one storage node (the node API of :mod:`storage_node`).

Node API used here (reads open, writes signed, see :mod:`storage_network.auth`)::

    PUT  /shards/<id>     201 new, 200 already held
    GET  /shards/<id>     200 body, 404 absent
    POST /shards/batch-get   {"ids": [...]} -> framed bodies   (see shard_batch)
    POST /shards/batch-put   framed shards, signed -> {"created": [...], "held": [...]}
    POST /shards/has      {"ids": [...], "touch": bool} -> {"present": [...]}
                          (touch: signed; sets the mtime of the present ones)
    DELETE /shards/<id>?before=T   signed; 204 deleted, 404 absent,
                          412 the shard was written or touched at/after T
    GET  /shards          "<id> <size> <mtime>" lines
    PUT  /records/<key>   201/200
    GET  /records/<key>   200 body, 404 absent
    DELETE /records/<key>?sha256=HEX  signed; 204 deleted, 404 absent,
                          412 the stored record is not the one named
    GET  /records         "<key> <size> <mtime> <atime>" lines
    POST /proofs          {"nonce": hex, "ids": [...]} -> binary answers
    GET  /healthz         JSON

Every failure other than "absent" (connection refused, timeout, 5xx, 4xx)
raises :class:`~storage_network.errors.NodeError` naming the node.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from .auth import Publisher, sign_write
from .errors import NodeError, ShardBatchError
from .network_file import NodeInfo
from .shard_batch import MAX_BATCH_IDS, encode_put_batch, parse_get_answer

HAS_BATCH = 5000
PEEK_HEADER = "X-Nixshard-Peek"
"""A record read carrying ``X-Nixshard-Peek: 1`` does not move the record's last-read time."""


@dataclass(frozen=True)
class ListedShard:
    """A shard a node lists: id, size (bytes), mtime (unix seconds)."""

    id: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ListedRecord:
    """A record a node lists: key, size (bytes), mtime and last read time (unix seconds)."""

    key: str
    size: int
    mtime: float
    atime: float


def _listing_lines(node_id: str, data: bytes, fields: int) -> list[list[str]]:
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) != fields:
            raise NodeError(f"node {node_id}: malformed listing line {line[:100]!r}")
        rows.append(parts)
    return rows


class NodeClient:
    """Talks to one node over a shared :class:`aiohttp.ClientSession`.

    Args:
        info: the node's id and base URL.
        session: a session owned by the caller (connection reuse).
        timeout: seconds for one whole request.
    """

    def __init__(self, info: NodeInfo, session: aiohttp.ClientSession, timeout: float = 30.0):
        self.info = info
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))

    @property
    def id(self) -> str:
        """The node id."""
        return self.info.id

    async def _request(self, method: str, path: str, *, body: bytes | None = None,
                       json_body: Any = None, publisher: Publisher | None = None,
                       ok: tuple[int, ...] = (200,),
                       headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if publisher is not None:
            digest = hashlib.sha256(body or b"").digest()
            headers.update(sign_write(publisher, method, path, digest))
        try:
            async with self._session.request(
                    method, self.info.url + path, data=body, json=json_body,
                    headers=headers, timeout=self._timeout) as resp:
                data = await resp.read()
                if resp.status in ok:
                    return resp.status, data
                text = data[:200].decode("utf-8", "replace").strip()
                raise NodeError(f"node {self.id}: {method} {path} -> {resp.status} {text}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise NodeError(f"node {self.id}: {method} {path} failed: "
                            f"{type(exc).__name__} {exc}") from exc

    async def put_shard(self, shard_id: str, body: bytes, publisher: Publisher) -> bool:
        """Store a shard body; True if the node did not hold it before."""
        status, _ = await self._request("PUT", f"/shards/{shard_id}", body=body,
                                        publisher=publisher, ok=(200, 201))
        return status == 201

    async def get_shard(self, shard_id: str) -> bytes | None:
        """The stored shard body, or None when the node says it has none (404)."""
        status, data = await self._request("GET", f"/shards/{shard_id}", ok=(200, 404))
        return data if status == 200 else None

    async def get_shards(self, shard_ids: list[str]) -> list[memoryview | None]:
        """The stored bodies of ``shard_ids`` in one request per 10000 ids (None: not
        held), as views into the answer.

        Raises:
            NodeError: the request failed or the answer is malformed.
        """
        bodies: list[memoryview | None] = []
        for start in range(0, len(shard_ids), MAX_BATCH_IDS):
            batch = shard_ids[start:start + MAX_BATCH_IDS]
            _, data = await self._request("POST", "/shards/batch-get", json_body={"ids": batch})
            try:
                bodies += parse_get_answer(data, len(batch))
            except ShardBatchError as exc:
                raise NodeError(f"node {self.id}: POST /shards/batch-get: {exc}") from exc
        return bodies

    async def put_shards(self, shards: list[tuple[str, bytes]], publisher: Publisher
                         ) -> set[str]:
        """Store ``(shard id, body)`` pairs in one signed request; the ids that were new.

        Raises:
            NodeError: the node refused or did not store the batch.
        """
        _, data = await self._request("POST", "/shards/batch-put",
                                      body=encode_put_batch(shards), publisher=publisher)
        try:
            return {str(x) for x in json.loads(data)["created"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(f"node {self.id}: malformed /shards/batch-put answer") from exc

    async def has(self, shard_ids: list[str], touch: Publisher | None = None) -> set[str]:
        """The subset of ``shard_ids`` the node claims to hold.

        Args:
            touch: a publisher about to reference these shards: the node then
                also sets their mtime to now, so a garbage collection running
                meanwhile keeps them (see :mod:`storage_network.gc`).
        """
        present: set[str] = set()
        for start in range(0, len(shard_ids), HAS_BATCH):
            batch = shard_ids[start:start + HAS_BATCH]
            if touch is None:
                status, data = await self._request("POST", "/shards/has",
                                                   json_body={"ids": batch})
            else:
                body = json.dumps({"ids": batch, "touch": True}).encode()
                status, data = await self._request("POST", "/shards/has", body=body,
                                                   publisher=touch)
            try:
                present.update(str(x) for x in json.loads(data)["present"])
            except (ValueError, KeyError, TypeError) as exc:
                raise NodeError(f"node {self.id}: malformed /shards/has answer") from exc
        return present

    async def delete_shard(self, shard_id: str, before: float, publisher: Publisher) -> bool:
        """Delete a shard unless it was written or touched at or after ``before`` (unix s).

        Returns:
            True if deleted; False if absent or kept because it is recent (412).
        """
        status, _ = await self._request("DELETE", f"/shards/{shard_id}?before={before:.3f}",
                                        publisher=publisher, ok=(204, 404, 412))
        return status == 204

    async def list_shards(self) -> list[ListedShard]:
        """Every shard the node lists (``GET /shards``)."""
        _, data = await self._request("GET", "/shards")
        try:
            return [ListedShard(i, int(s), float(t))
                    for i, s, t in _listing_lines(self.id, data, 3)]
        except ValueError as exc:
            raise NodeError(f"node {self.id}: malformed shard listing: {exc}") from exc

    async def list_records(self) -> list[ListedRecord]:
        """Every record the node lists (``GET /records``)."""
        _, data = await self._request("GET", "/records")
        try:
            return [ListedRecord(k, int(s), float(m), float(a))
                    for k, s, m, a in _listing_lines(self.id, data, 4)]
        except ValueError as exc:
            raise NodeError(f"node {self.id}: malformed record listing: {exc}") from exc

    async def prove(self, nonce: bytes, shard_ids: list[str]) -> bytes:
        """The node's raw answer to a storage challenge (see :mod:`storage_network.proofs`)."""
        _, data = await self._request("POST", "/proofs",
                                      json_body={"nonce": nonce.hex(), "ids": shard_ids})
        return data

    async def put_record(self, key: str, data: bytes, publisher: Publisher) -> None:
        """Store a signed record under ``key``."""
        await self._request("PUT", f"/records/{key}", body=data, publisher=publisher,
                            ok=(200, 201))

    async def get_record(self, key: str, peek: bool = False) -> bytes | None:
        """The record bytes under ``key``, or None when absent (404).

        Args:
            peek: a maintenance read (inventory, audit, gc, repair): sends
                ``X-Nixshard-Peek: 1`` so the node does not count it as a use
                of the record (its last-read time stays).
        """
        status, data = await self._request("GET", f"/records/{key}", ok=(200, 404),
                                           headers={PEEK_HEADER: "1"} if peek else None)
        return data if status == 200 else None

    async def delete_record(self, key: str, sha256_hex: str, publisher: Publisher) -> bool:
        """Delete record ``key`` if the stored bytes have SHA-256 ``sha256_hex``.

        Returns:
            True if deleted; False if absent or replaced meanwhile (412).
        """
        status, _ = await self._request("DELETE", f"/records/{key}?sha256={sha256_hex}",
                                        publisher=publisher, ok=(204, 404, 412))
        return status == 204

    async def health(self) -> dict[str, Any]:
        """The node's ``/healthz`` JSON."""
        _, data = await self._request("GET", "/healthz")
        result: dict[str, Any] = json.loads(data)
        return result
