"""An S3-compatible bucket as a :class:`~storage_network.nodes.base.NodeStore`.

URL ``s3://BUCKET/PREFIX?endpoint=URL&region=R&profile=P``; credentials only from
the standard AWS sources (see :mod:`storage_network.nodes.s3_transport`).  Objects:
``PREFIX/shards/<shard id>``, ``PREFIX/records/<key>``, and ``PREFIX/reads/<key>``
(an empty marker whose LastModified is the record's last read).  Every request
takes one of the node's slots; batches (``has``, ``get_shards``, ``put_shards``,
``prove``) run one object per request, ``slots`` at once.

The bucket checks no publisher signature: the writer's bucket credentials
authorize writes, and the client enforces what our node would:

- ``put_shard``: the body must prove membership in the stripe its id names
  (else 422, as our node answers), then ``PUT If-None-Match: *``.  A held id
  (412) costs a HEAD: a plain-MD5 ETag that differs from the body's MD5 is
  healed (``PUT If-Match``, True), otherwise the shard is touched (False).
- ``put_record``: read the held version (one GET), apply
  :func:`~storage_network.wire.record.replacement` (409 for older or other
  content), then ``PUT If-None-Match: *`` (nothing held) or ``If-Match: <ETag>``;
  a 412 (another writer got in between) reads and decides again, up to 4 times.
  Exact newest-wins where the store honours conditional PUTs (SeaweedFS >= 3.8,
  AWS since 2024).  The held version is opened with the network's publisher
  keys when given (``publishers``), else with the writer's own: one that does
  not open is replaced, as our node replaces a version it cannot open.
- ``delete_record(key, sha256)``: GET, compare the digest, ``DELETE If-Match:
  <ETag>``: atomic where the store honours If-Match on DELETE (SeaweedFS,
  AWS); elsewhere a replacement landing between the GET and the DELETE is lost.
- ``delete_shard(id, before)``: HEAD, keep it unless ``LastModified + 1 s <=
  before`` (S3 times have one-second resolution: a shard is deleted only when
  it surely was last written before ``before``), then DELETE.  Not atomic:
  S3 has no If-Unmodified-Since on DELETE (SeaweedFS ignores it) and a touch
  keeps the ETag, so a touch or PUT landing in the few milliseconds between
  the HEAD and the DELETE is lost: that node loses one shard a push counted
  on, which audit and repair restore (the stripe still has its other shards).
- touch (``has(ids, touch=...)``): ``CopyObject`` of each object onto itself
  with ``MetadataDirective: REPLACE`` (one request per id instead of a HEAD;
  SeaweedFS rewrites metadata only, ~1 ms) sets LastModified to now; NoSuchKey
  means absent.
- read times: a ``get_record`` without ``peek`` PUTs the empty marker
  ``reads/<key>`` when this store has not done so for that key in
  :data:`~storage_network.nodes.base.READ_TIME_RESOLUTION_SECONDS` (one empty
  PUT per record per minute per client process); ``list_records`` lists
  ``records/`` and ``reads/`` (one extra listing) and reports as atime the
  later of the record's LastModified and its marker's.  A failed marker PUT
  is ignored (the read succeeded).  ``delete_record`` removes the marker.
- proofs: the client reads each challenged shard whole (a block-tree path
  needs every block's hash, so Range GETs do not suffice) and computes the
  entry itself: one GET of the full shard per id (64 KiB-1 MiB, typically;
  capped at :data:`MAX_PROOF_SHARD_BYTES`).  It proves that the bucket served
  the bytes when asked, which is all a bucket can prove (a node could also
  fetch public cache data on demand).

Key roles cannot be enforced by the bucket: whoever holds its credentials
with ``s3:DeleteObject`` can delete, so the bucket policy decides who may
(give delete rights only to the maintainers' machines).  So that misuse
fails clearly all the same, the client refuses, before any request and as
our node would (``NodeStatusError`` 403, "lacks the maintainer role"), a
``delete_shard``/``delete_record`` signed by a key that may not delete, and
a tombstone that such a key both sealed and sends, when it was given the
network's keys (``publishers``) and that key is not one of them or lacks the role
(:attr:`~storage_network.wire.write_auth.PublisherKey.may_delete`; every
publisher has it when the network file lists no ``maintainers``).

Answers are hostile: shards are capped by the caller's limit, records by
MAX_RECORD_BYTES, listings by MAX_LISTING_ENTRIES rows (pages: 2 MiB);
listed keys that are not ids of ours are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage_network.config import NodeInfo
from storage_network.errors import (
    AuthError,
    NodeAnswerError,
    NodeError,
    NodeStatusError,
    RecordError,
    ShardProofError,
)
from storage_network.nodes.base import READ_TIME_RESOLUTION_SECONDS, GatedNode
from storage_network.nodes.limits import (
    RECORD_FREE_BYTES,
    AnswerBudget,
    Deadlines,
    LoopLag,
    RequestGate,
)
from storage_network.nodes.s3_transport import S3Transport, each, parse_s3_url
from storage_network.wire.listing import MAX_LISTING_ENTRIES, ListedRecord, ListedShard
from storage_network.wire.proofs import answer_entry
from storage_network.wire.record import (
    MAX_RECORD_BYTES,
    RECORD_KEY_RE,
    Record,
    Replacement,
    open_record,
    replacement,
)
from storage_network.wire.stripe import parse_shard_id, verify_shard
from storage_network.wire.write_auth import (
    TOMBSTONE_WHAT,
    Publisher,
    PublisherKey,
    check_may_delete,
    check_may_store_tombstone,
)

log = logging.getLogger("nixshard.network")
MAX_PROOF_SHARD_BYTES = 64 << 20
"""Largest shard read to answer a challenge (bytes): our node's default shard limit."""
RECORD_WRITE_ATTEMPTS = 4
_SHA256_HEX = re.compile(r"\A[0-9a-f]{64}\Z")
_PLAIN_MD5 = re.compile(r'\A"?([0-9a-f]{32})"?\Z')
_MARKS_KEPT = 100_000


class S3NodeStore(GatedNode):
    """A bucket (or a prefix of one) as a node; see the module docstring.

    Args:
        info: the node's id and ``s3://`` URL (ValueError when malformed).
        deadlines, slots, lag, budget: as for :class:`~storage_network.nodes.http.NodeClient`.
        publishers: the network's publisher keys (with their roles), to open held
            records with and to refuse deletes by keys without the maintainer
            role (None: the writer's own key, and no refusal).
    """

    def __init__(self, info: NodeInfo, *, deadlines: Deadlines | None = None, slots: int = 16,
                 lag: LoopLag | None = None, budget: AnswerBudget | None = None,
                 publishers: dict[str, PublisherKey] | None = None) -> None:
        self.info = info
        self.where = parse_s3_url(info.url)
        self.gate = RequestGate(info.id, deadlines or Deadlines(), slots, lag,
                                budget or AnswerBudget())
        self.s3 = S3Transport(info.id, self.where, self.gate)
        self.publishers = publishers
        self._marked: dict[str, float] = {}  # record key -> monotonic time of its marker PUT

    async def close(self) -> None:
        """Close the S3 client and its connections."""
        await self.s3.close()

    # --- helpers -----------------------------------------------------------------------------

    def _known(self, signer: PublisherKey) -> PublisherKey | None:
        """``signer`` as the network lists it (with its role), None when not listed."""
        known = (self.publishers or {}).get(signer.name)
        if known is None or bytes(known.verify_key) != bytes(signer.verify_key):
            return None
        return known

    def _check_may_delete(self, signer: PublisherKey, what: str) -> None:
        """Refuse ``what`` when ``signer`` is not among the network's keys or lacks the
        maintainer role (see the module docstring); nothing without ``publishers``."""
        if self.publishers is None:
            return
        known = self._known(signer)
        try:
            if known is None:
                raise AuthError(f"key {signer.name!r} is not one of the network's keys, "
                                f"so it may not {what}")
            check_may_delete(known, what)
        except AuthError as exc:
            raise self._refused(what, exc) from None

    def _check_may_store_tombstone(self, signer: PublisherKey, sender: PublisherKey) -> None:
        """Refuse a tombstone that neither its sealer ``signer`` nor its ``sender`` may
        delete with (:func:`check_may_store_tombstone`, the network's roles; a
        sender the network does not list has none); nothing without ``publishers``."""
        if self.publishers is None:
            return
        known = self._known(sender)
        try:
            check_may_store_tombstone(signer, known is not None and known.may_delete)
        except AuthError as exc:
            raise self._refused(TOMBSTONE_WHAT, exc) from None

    def _refused(self, what: str, exc: AuthError) -> NodeStatusError:
        """The 403 of ``what`` refused by the client for ``exc`` (logged)."""
        log.warning("node %s: refused to %s: %s", self.id, what, exc)
        return NodeStatusError(f"node {self.id}: {exc} (refused by the client: a bucket "
                               f"cannot check key roles)", 403)

    def _shard_key(self, shard_id: str) -> str:
        try:
            parse_shard_id(shard_id)
        except ShardProofError as exc:
            raise NodeStatusError(f"node {self.id}: {exc}", 400) from None
        return self.where.key("shards", shard_id)

    def _record_key(self, key: str) -> str:
        if not RECORD_KEY_RE.fullmatch(key):
            raise NodeStatusError(f"node {self.id}: bad record key {key[:80]!r}", 400)
        return self.where.key("records", key)

    async def _list(self, folder: str, keep: Callable[[str], bool], after: str = "",
                    limit: int | None = None, until: str | None = None
                    ) -> list[tuple[str, int, float]]:
        """``(name, size, LastModified unix s)`` of the objects in ``folder`` whose names
        ``keep`` accepts, past ``after``: at most ``limit`` of them, and none past
        ``until``; one ListObjectsV2 page (<= 1000 keys) per request (names come
        sorted: S3 lists keys in UTF-8 binary order)."""
        prefix = self.where.key(folder)
        rows: list[tuple[str, int, float]] = []
        most = MAX_LISTING_ENTRIES if limit is None else limit
        token: dict[str, Any] = {"StartAfter": prefix + after} if after else {}
        while True:
            _, page = await self.s3.call(f"LIST {folder}", "list_objects_v2", Prefix=prefix,
                                         MaxKeys=1000, **token)
            items = page.get("Contents", [])
            if not isinstance(items, list) or len(items) > 1000:
                raise NodeAnswerError(f"node {self.id}: LIST {folder}: malformed page")
            for item in items:
                key, size, when = item.get("Key"), item.get("Size"), item.get("LastModified")
                if not (isinstance(key, str) and key.startswith(prefix)
                        and isinstance(size, int) and isinstance(when, datetime)):
                    raise NodeAnswerError(f"node {self.id}: LIST {folder}: malformed entry")
                name = key[len(prefix):]
                if until is not None and name > until:
                    return rows
                if keep(name):
                    if len(rows) >= most:
                        if limit is not None:
                            return rows
                        raise NodeAnswerError(f"node {self.id}: LIST {folder}: over "
                                              f"{MAX_LISTING_ENTRIES} entries")
                    rows.append((name, size, when.timestamp()))
            following = page.get("NextContinuationToken")
            if not page.get("IsTruncated"):
                return rows
            if not items or not isinstance(following, str):
                raise NodeAnswerError(f"node {self.id}: LIST {folder}: a truncated listing "
                                      "without entries or continuation")
            token = {"ContinuationToken": following}

    # --- shards ------------------------------------------------------------------------------

    async def put_shard(self, shard_id: str, body: bytes, publisher: Publisher) -> bool:
        """Store one shard body (checked against its id first); True when it was not
        held (or was healed)."""
        key = self._shard_key(shard_id)
        try:  # hashing the whole body: off the event loop
            await asyncio.to_thread(verify_shard, *parse_shard_id(shard_id), body,
                                    check_blocks=True)
        except ShardProofError as exc:
            raise NodeStatusError(f"node {self.id}: shard {shard_id[:20]}: {exc}", 422) from None
        status, _ = await self.s3.call("PUT shard", "put_object", quiet=(412,), Key=key,
                                       Body=body, IfNoneMatch="*")
        if status == 200:
            return True
        status, head = await self.s3.call("HEAD shard", "head_object", quiet=(404,), Key=key)
        condition: dict[str, Any] = {"IfNoneMatch": "*"}
        if status == 200:
            held = _PLAIN_MD5.fullmatch(str(head.get("ETag", "")))
            md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
            if held is None or held.group(1) == md5:
                if await self._touch(shard_id):
                    return False  # held (or its ETag cannot tell): touched, as a re-PUT does
            else:
                condition = {"IfMatch": head["ETag"]}  # held bytes differ: heal them
        status, _ = await self.s3.call("PUT shard (again)", "put_object", quiet=(404, 412),
                                       Key=key, Body=body, **condition)
        return status == 200  # False: another writer stored it meanwhile

    async def put_shards(self, shards: list[tuple[str, bytes]], publisher: Publisher
                         ) -> set[str]:
        """Store ``(id, body)`` pairs, ``slots`` at once; the ids that were new.
        Raises the first failure (the batch is then not acknowledged)."""
        new = await each(self.gate.slots, shards, lambda item: self.put_shard(*item, publisher))
        return {sid for (sid, _), created in zip(shards, new, strict=True) if created}

    async def get_shard(self, shard_id: str, limit: int) -> bytes | None:
        """One shard body (at most ``limit`` bytes), None when absent."""
        found = await self.s3.read("GET shard", self._shard_key(shard_id), limit)
        return None if found is None else found[0]

    async def get_shards(self, shard_ids: list[str], limits: list[int]
                         ) -> list[memoryview | None]:
        """The bodies of ``shard_ids`` in order (None: absent), ``slots`` GETs at once."""
        async def one(item: tuple[str, int]) -> memoryview | None:
            body = await self.get_shard(*item)
            return None if body is None else memoryview(body)
        return await each(self.gate.slots, list(zip(shard_ids, limits, strict=True)), one)

    async def _touch(self, shard_id: str) -> bool:
        """Set the shard's LastModified to now (CopyObject onto itself); False if absent."""
        key = self._shard_key(shard_id)
        status, _ = await self.s3.call(
            "TOUCH shard", "copy_object", quiet=(404,), Key=key, MetadataDirective="REPLACE",
            CopySource={"Bucket": self.where.bucket, "Key": key})
        return status == 200

    async def _holds(self, shard_id: str) -> bool:
        status, _ = await self.s3.call("HEAD shard", "head_object", quiet=(404,),
                                       Key=self._shard_key(shard_id))
        return status == 200

    async def has(self, shard_ids: list[str], touch: Publisher | None = None) -> set[str]:
        """The ids held (one HEAD each; with ``touch``, one CopyObject each instead)."""
        held = await each(self.gate.slots, shard_ids, self._holds if touch is None else self._touch)
        return {sid for sid, there in zip(shard_ids, held, strict=True) if there}

    async def delete_shard(self, shard_id: str, before: float, publisher: Publisher) -> bool:
        """Delete a shard surely last written or touched before ``before`` (unix s);
        False when absent or possibly more recent (see the module docstring's window).
        NodeStatusError 403 when ``publisher`` may not delete."""
        key = self._shard_key(shard_id)
        self._check_may_delete(publisher.public, "delete shards")
        status, head = await self.s3.call("HEAD shard", "head_object", quiet=(404,), Key=key)
        when = head.get("LastModified")
        if status == 404 or not isinstance(when, datetime) or when.timestamp() + 1 > before:
            return False
        etag = head.get("ETag")
        condition = {"IfMatch": etag} if isinstance(etag, str) and etag else {}
        status, _ = await self.s3.call("DELETE shard", "delete_object", quiet=(404, 412),
                                       Key=key, **condition)
        return status == 200

    async def list_shards(self, after: str = "", limit: int | None = None
                          ) -> list[ListedShard]:
        """The shards held past ``after``, at most ``limit``: id, size (bytes),
        LastModified (unix s, whole seconds)."""
        return [ListedShard(name, size, mtime) for name, size, mtime
                in await self._list("shards", _is_shard_id, after, limit)]

    async def prove(self, nonce: bytes, shard_ids: list[str]) -> bytes:
        """The answer to a storage challenge, computed here from each shard read whole."""
        async def entry(shard_id: str) -> bytes:
            found = await self.s3.read("GET shard (proof)", self._shard_key(shard_id),
                                       MAX_PROOF_SHARD_BYTES)
            return await asyncio.to_thread(answer_entry, nonce, shard_id,
                                           None if found is None else found[0])
        return b"".join(await each(self.gate.slots, shard_ids, entry))

    # --- records -----------------------------------------------------------------------------

    async def _held_record(self, key: str) -> tuple[bytes, str] | None:
        found = await self.s3.read("GET record", self._record_key(key), MAX_RECORD_BYTES,
                                   free=RECORD_FREE_BYTES)
        if found is None:
            return None
        etag = found[1].get("ETag")
        if not isinstance(etag, str) or not etag:
            raise NodeAnswerError(f"node {self.id}: GET record {key}: answer without an ETag")
        return found[0], etag

    def _open(self, keys: dict[str, PublisherKey], key: str, data: bytes) -> Record | None:
        try:
            return open_record(keys, key, data)
        except RecordError as exc:
            log.warning("node %s: record %s: the held version cannot be opened (%s); a "
                        "valid PUT replaces it", self.id, key, exc)
            return None

    async def put_record(self, key: str, data: bytes, publisher: Publisher) -> int:
        """Store a signed record or tombstone: 201 stored, 200 replaced or already held;
        NodeStatusError 409 when the bucket holds a newer or conflicting version
        (or other writers kept replacing it), 422 when ``data`` does not open, 403
        for a tombstone that neither its sealer nor ``publisher`` may delete with."""
        target = self._record_key(key)
        keys = self.publishers or {publisher.name: publisher.public}
        try:
            incoming = open_record(keys, key, data)
        except RecordError as exc:
            raise NodeStatusError(f"node {self.id}: record {key}: {exc}", 422) from None
        if incoming.tombstone:
            self._check_may_store_tombstone(incoming.publisher, publisher.public)
        for _ in range(RECORD_WRITE_ATTEMPTS):
            found = await self._held_record(key)
            held = None if found is None else self._open(keys, key, found[0])
            verdict = replacement(held, incoming)
            if verdict is Replacement.SAME:
                return 200
            if verdict is not Replacement.STORE:
                raise NodeStatusError(f"node {self.id}: holds a newer version or another "
                                      f"content of record {key}: kept", 409)
            condition: dict[str, Any] = \
                {"IfNoneMatch": "*"} if found is None else {"IfMatch": found[1]}
            status, _ = await self.s3.call("PUT record", "put_object", quiet=(404, 412),
                                           Key=target, Body=data, **condition)
            if status == 200:
                return 201 if found is None else 200
        raise NodeStatusError(f"node {self.id}: record {key} kept changing under "
                              f"{RECORD_WRITE_ATTEMPTS} writes", 409)

    async def get_record(self, key: str, peek: bool = False) -> bytes | None:
        """The record bytes (at most MAX_RECORD_BYTES), None when absent; a read that
        is not a ``peek`` refreshes the record's read marker (once a minute)."""
        found = await self._held_record(key)
        if found is not None and not peek:
            await self._mark_read(key)
        return None if found is None else found[0]

    async def get_records(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of each record of ``keys`` in order (None: absent), ``slots`` GETs
        at once (S3 has no batch read); a maintenance read."""
        async def one(key: str) -> bytes | None:
            return await self.get_record(key, peek=True)
        return await each(self.gate.slots, keys, one)

    async def _mark_read(self, key: str) -> None:
        now = time.monotonic()
        if now - self._marked.get(key, -READ_TIME_RESOLUTION_SECONDS) \
                < READ_TIME_RESOLUTION_SECONDS:
            return
        if len(self._marked) >= _MARKS_KEPT:
            self._marked.clear()
        try:
            await self.s3.call("PUT read marker", "put_object",
                               Key=self.where.key("reads", key), Body=b"")
        except NodeError as exc:
            log.info("node %s: record %s: read time not kept: %s", self.id, key, exc)
            return
        self._marked[key] = now

    async def delete_record(self, key: str, sha256_hex: str, publisher: Publisher) -> bool:
        """Delete record ``key`` if its bytes have SHA-256 ``sha256_hex`` (GET, compare,
        DELETE If-Match its ETag); False when absent or replaced meanwhile.
        NodeStatusError 403 when ``publisher`` may not delete."""
        self._check_may_delete(publisher.public, "delete records")
        if not _SHA256_HEX.fullmatch(sha256_hex.lower()):
            raise NodeStatusError(f"node {self.id}: bad sha256 {sha256_hex[:80]!r}", 400)
        found = await self._held_record(key)
        if found is None or hashlib.sha256(found[0]).hexdigest() != sha256_hex.lower():
            return False
        status, _ = await self.s3.call("DELETE record", "delete_object", quiet=(404, 412),
                                       Key=self._record_key(key), IfMatch=found[1])
        if status == 200:
            await self.s3.call("DELETE read marker", "delete_object", quiet=(404,),
                               Key=self.where.key("reads", key))
        self._marked.pop(key, None)
        return status == 200

    async def list_records(self, after: str = "", limit: int | None = None
                           ) -> list[ListedRecord]:
        """The records held past ``after``, at most ``limit``: key, size, LastModified
        and last read (the later of LastModified and the read marker's), unix seconds."""
        records = await self._list("records", _is_record_key, after, limit)
        until = records[-1][0] if limit is not None and records else None
        reads = await self._list("reads", _is_record_key, after, None, until) \
            if records else []
        read_at = {name: when for name, _, when in reads}
        return [ListedRecord(name, size, mtime, max(mtime, read_at.get(name, mtime)))
                for name, size, mtime in records]

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok", "kind": "s3", ...}`` when the bucket answers a HeadBucket."""
        await self.s3.call("HEAD bucket", "head_bucket")
        return {"status": "ok", "kind": "s3", "bucket": self.where.bucket,
                "prefix": self.where.prefix, "endpoint": self.where.endpoint}


def _is_record_key(name: str) -> bool:
    return RECORD_KEY_RE.fullmatch(name) is not None


def _is_shard_id(name: str) -> bool:
    try:
        parse_shard_id(name)
    except ShardProofError:
        return False
    return True
