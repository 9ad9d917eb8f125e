"""The write path: payload -> chunks -> stripes -> shards on nodes -> record last.

:func:`store_payload` streams a payload (any iterable of byte pieces) through
the chunker, encodes chunks on the client's thread pool (zstd releases the GIL) with a
bounded number in flight, and stores batches of chunks with
:func:`storage_network.write.shard_upload.upload_batch`: per node and round one
request that asks which shards it already holds and one batch put of the
rest (:mod:`storage_network.wire.shard_batch`), going around nodes that are
down, full or slow.  It returns the manifest once every chunk has at least
k + 1 shards on distinct nodes (n unless nodes were missing).  Memory is
bounded by ``window`` encoded chunks and two batches, not by payload size.
:func:`publish_record` then writes the signed record to its replica window
(:mod:`storage_network.write.record_write`): the commit point, so a reader never
sees a record whose shards are not stored.

Garbage collection (:mod:`storage_network.upkeep.gc`) may run meanwhile.  The
``has`` query is signed with ``touch``, so every shard a push reuses gets
a fresh mtime on its node, as every shard it uploads does; and
:attr:`PublishStats.touched_at` notes when the first one was touched.
Given it, :func:`publish_record` refuses to write a record more than half
the network's ``gc_grace_seconds`` after that (:func:`check_push_window`):
a collector spares unreferenced shards younger than the grace, so a push
that keeps to half of it (the other half absorbs clock skew between
publisher, nodes and collector) never references a collected shard.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.coding.chunker import iter_chunks
from storage_network.coding.codec import EncodedChunk, StripeCodec
from storage_network.coding.sealing import CacheSecret, Keyring
from storage_network.errors import NodeError, RecordConflictError
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.record import Record, open_record, seal_record
from storage_network.wire.sealed_metadata import seal_metadata
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version
from storage_network.write.shard_upload import StripeUpload, UploadState, upload_batch

BATCH_CHUNKS = 32
MAX_PUTS_IN_FLIGHT = 12  # batch requests, each one node's share of a batch


@dataclass
class PublishStats:
    """What one or more publishes did, in bytes and counts.

    Attributes:
        touched_at: unix time (publisher's clock) just before the first shard
            was touched or written; None when nothing was.  Pass it to
            :func:`publish_record` as ``touched_at``.
        degraded_chunks: chunks stored with fewer than n (at least k + 1)
            shards, because fewer nodes could take them: ``nixshard repair``
            completes them.
        passed_over: node id -> why shards meant for it went to other nodes.
    """

    payload_bytes: int = 0
    chunks: int = 0
    chunks_reused: int = 0
    stored_bytes: int = 0
    reused_bytes: int = 0
    touched_at: float | None = None
    degraded_chunks: int = 0
    passed_over: dict[str, str] = field(default_factory=dict)

    def add(self, other: PublishStats) -> None:
        """Add ``other``'s figures to these (``touched_at``: the earlier one;
        ``passed_over``: the first reason per node)."""
        for name in ("payload_bytes", "chunks", "chunks_reused", "stored_bytes",
                     "reused_bytes", "degraded_chunks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        times = [t for t in (self.touched_at, other.touched_at) if t is not None]
        self.touched_at = min(times) if times else None
        for node_id, why in other.passed_over.items():
            self.passed_over.setdefault(node_id, why)


async def _encoded_chunks(pieces: Iterable[bytes], net: NetworkClient, codec: StripeCodec,
                          window: int) -> AsyncIterator[EncodedChunk]:
    """Encoded chunks in payload order (sealed under the client's current cache
    secret, if it has a keyring); at most ``window`` being encoded at once."""
    loop = asyncio.get_running_loop()
    secret = net.keyring.current if net.keyring is not None else None
    chunks = iter_chunks(pieces, net.network.chunking)
    pending: deque[asyncio.Future[EncodedChunk]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="nixshard-read") as reader:
        while True:
            chunk = await loop.run_in_executor(reader, next, chunks, None)
            if chunk is None:
                break
            pending.append(loop.run_in_executor(net.pool, codec.encode, chunk, secret))
            if len(pending) >= window:
                yield await pending.popleft()
    while pending:
        yield await pending.popleft()


def _check_stripes(stripes: list[StripeUpload], k: int, n: int, state: UploadState,
                   stats: PublishStats) -> None:
    """Count the batch's reused and degraded stripes; refuse one below k + 1 shards.

    Raises:
        NodeError: a stripe has fewer than ``min(n, k + 1)`` shards stored.
    """
    least = min(n, k + 1)
    for stripe in stripes:
        held = len(stripe.placed)
        if held < least:
            raise NodeError(
                f"chunk {stripe.enc.ref.chunk_id.hex()[:16]}: {held} of {n} shards stored, "
                f"at least {least} needed (k + 1); nodes passed over: "
                + ("; ".join(state.failures.values()) or "none"))
        if held < n:
            stats.degraded_chunks += 1
        if not stripe.uploaded:
            stats.chunks_reused += 1


async def store_payload(net: NetworkClient, publisher: Publisher, pieces: Iterable[bytes],
                        window: int = 2 * BATCH_CHUNKS) -> tuple[Manifest, PublishStats]:
    """Chunk, encode and store a payload; return its manifest and what was stored.

    Shards go around nodes that are down, full or slow
    (:mod:`storage_network.write.shard_upload`).  Every chunk ends with n shards on
    n distinct nodes, or, when fewer nodes could take them, with at least
    k + 1: such chunks are counted in :attr:`PublishStats.degraded_chunks`
    (``nixshard repair`` completes them once nodes are back).  With the
    client's keyring (a private cache) every chunk is sealed and the
    manifest is a sealed one whose refs carry their keys.

    Args:
        pieces: the payload as byte pieces of any size (read on a helper thread).
        window: chunks encoded ahead at most (memory bound; default 2 batches).
            Encoding runs on the network client's pool.

    Raises:
        NodeError: a chunk could not get k + 1 shards stored (the payload is
            then not published; shards already stored are harmless and
            reused later); the message names the nodes passed over and why.
        QuotaExceededError: a node refused shards because the publisher is
            over its quota there: the upload stops at once (the payload is not
            published; shards already stored are charged and reused later).
    """
    nw = net.network
    codec = net.codec(nw.codec, nw.k, nw.m)
    stats = PublishStats()
    state = UploadState()
    refs: list[ChunkRef] = []
    limit = asyncio.Semaphore(MAX_PUTS_IN_FLIGHT)
    uploads: deque[asyncio.Task[list[StripeUpload]]] = deque()

    async def settle(task: asyncio.Task[list[StripeUpload]]) -> None:
        _check_stripes(await task, nw.k, nw.n, state, stats)

    def start(batch: list[EncodedChunk]) -> None:
        if stats.touched_at is None:
            stats.touched_at = time.time()
        uploads.append(asyncio.create_task(upload_batch(net, publisher, batch, state, limit)))

    try:
        batch: list[EncodedChunk] = []
        async for enc in _encoded_chunks(pieces, net, codec, window):
            refs.append(enc.ref)
            stats.chunks += 1
            stats.payload_bytes += enc.ref.size
            batch.append(enc)
            if len(batch) >= BATCH_CHUNKS:
                start(batch)
                batch = []
                if len(uploads) > 1:
                    await settle(uploads.popleft())
        if batch:
            start(batch)
        while uploads:
            await settle(uploads.popleft())
    finally:
        for task in uploads:
            task.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
    stats.stored_bytes += state.stored_bytes
    stats.reused_bytes += state.reused_bytes
    stats.passed_over.update(state.failures)
    return Manifest(nw.codec, nw.k, nw.m, tuple(refs), net.keyring is not None), stats


def check_push_window(net: NetworkClient, touched_at: float | None,
                      now: float | None = None) -> None:
    """Refuse a record written too long after its payload's first shard was touched.

    Args:
        touched_at: :attr:`PublishStats.touched_at` of the payload (None: no
            shards, nothing to check).
        now: the current unix time (default: the clock).

    Raises:
        NodeError: more than half the network's ``gc_grace_seconds`` passed
            since ``touched_at``: a garbage collection may have deleted a
            shard the push reused (pushing again touches them anew).
    """
    if touched_at is None:
        return
    grace = net.network.gc_grace_seconds
    elapsed = (time.time() if now is None else now) - touched_at
    if elapsed > grace / 2:
        raise NodeError(
            f"push took longer than gc_grace_seconds/2 ({elapsed:.0f} s > {grace / 2:.0f} s, "
            f"gc_grace_seconds = {grace}) between touching its first shard and writing its "
            "record: a garbage collection may have removed shards it reuses; push again")


def keyed_links(keyring: Keyring, links: Iterable[str], own: str | None = None) -> list[str]:
    """The links a private record carries in the clear: each plain key in ``links``
    keyed under every secret of ``keyring`` (a record it needs may have been sealed
    under an older secret), sorted, without duplicates and without ``own`` (the
    record's own keyed key)."""
    keyed = {secret.record_key(plain) for plain in links for secret in keyring}
    if own is not None:
        keyed.discard(own)
    return sorted(keyed)


def _signed(publisher: Publisher, record_key: str, metadata: bytes, manifest: Manifest,
            secret: CacheSecret | None, links: Sequence[str], pin: bool,
            expires: int | None = None, created: int | None = None) -> tuple[bytes, Record]:
    """The signed envelope of the record and the Record it opens to, its metadata
    first sealed under ``secret`` (when given) with ``links`` (keyed) and ``pin``:
    the CPU work of :func:`publish_record`, run on the client's pool.

    Raises:
        ValueError: as :func:`~storage_network.wire.sealed_metadata.seal_metadata`.
    """
    if secret is not None:
        metadata = seal_metadata(secret, record_key, metadata, manifest, links=links,
                                 pin=pin)
    data = seal_record(publisher, record_key, metadata, manifest, created=created,
                       expires=expires)
    return data, open_record({publisher.name: publisher.public}, record_key, data)


async def publish_record(net: NetworkClient, publisher: Publisher, record_key: str,
                         metadata: bytes, manifest: Manifest, *,
                         touched_at: float | None = None, links: Sequence[str] = (),
                         pin: bool = False, secret: CacheSecret | None = None,
                         expires: int | None = None) -> int:
    """Sign the record and write it to its replica window; returns its size in bytes.

    The rule of docs/consistency.md (:func:`storage_network.write.record_write.write_version`):
    the first node of the key's window (its first ``record_replicas + m``
    nodes) that answers is the arbiter; then the next nodes of the window
    in ranking order until ``record_replicas`` hold it.  A node holding a
    newer version of the same content counts as holding it.

    With the client's keyring (a private cache), ``record_key`` is the
    plain key: the record goes under the current secret's keyed key, its
    metadata and chunk keys sealed (:mod:`storage_network.wire.sealed_metadata`),
    and ``links`` (plain keys) keyed under every secret of the keyring
    (:func:`keyed_links`) and written in the clear with ``pin``, so garbage
    collection keeps closures whole without the secret
    (:func:`~storage_network.wire.sealed_metadata.public_links`).  Without a
    keyring ``links`` and ``pin`` are not written: a public record's metadata
    says them itself.

    Args:
        touched_at: :attr:`PublishStats.touched_at` from :func:`store_payload`;
            when given, the record is refused if it comes too late (see
            :func:`check_push_window`).
        links: plain keys of the records this one needs while it stays.
        pin: the record is a pin (it never expires and keeps its links).
        secret: with a keyring, the secret of the keyring to seal under
            (default: the current one); an older one only to replace that
            secret's version of a record.
        expires: unix seconds the record's lease ends at (signed in it; see
            :mod:`storage_network.wire.record`); None: no lease, it never expires.

    Raises:
        QuotaExceededError: the arbiter refused the record because the
            publisher is over its quota there (nothing written), or fewer than
            ``record_replicas`` nodes took it and one of them refused for quota.
        RecordConflictError: the arbiter holds a record of another content
            under the key (the first committed content wins): nothing written.
        NodeError: fewer than ``record_replicas`` nodes of the window took it
            (publishing again completes it), the arbiter holds a newer
            tombstone, or the push took longer than half of
            ``gc_grace_seconds`` (nothing written).
        ValueError: a sealed manifest without a keyring or the reverse, a
            ``secret`` not in the keyring, or more links than sealed metadata
            holds (:data:`~storage_network.wire.sealed_metadata.MAX_LINKS`).
    """
    check_push_window(net, touched_at)
    if manifest.sealed != (net.keyring is not None):
        raise ValueError("a sealed manifest is published by a client with a keyring, "
                         "and only such")
    if net.keyring is not None:
        if secret is None:
            secret = net.keyring.current
        elif net.keyring.by_id(secret.secret_id) is None:
            raise ValueError(f"cache secret {secret.name} is not in the client's keyring")
        record_key = secret.record_key(record_key)
        links = keyed_links(net.keyring, links, record_key)
    elif secret is not None:
        raise ValueError("a cache secret is given to a client without a keyring")
    # a version newer than any this client saw, even within the same second (a renewal)
    seen = net.records.version(record_key)
    created = None if seen is None else max(int(time.time()), seen[0] + 1)
    data, incoming = await asyncio.get_running_loop().run_in_executor(
        net.pool, _signed, publisher, record_key, metadata, manifest, secret, links, pin,
        expires, created)
    outcome = await write_version(net, publisher, record_key, data, incoming)
    if outcome.conflict is not None:
        raise RecordConflictError(
            f"record {record_key}: the key holds a record of another content (created "
            f"{outcome.conflict.created}, signed by {outcome.conflict.publisher.name}); "
            "the first committed content wins")
    if outcome.superseded is not None:
        raise NodeError(f"record {record_key}: a newer version (created "
                        f"{outcome.superseded.created}) was written after this one was "
                        "sealed; publish again")
    want = net.network.record_replicas
    if outcome.quota is not None and len(outcome.stored) < want:
        raise outcome.quota
    if len(outcome.stored) < want:
        raise NodeError(f"record {record_key} stored on {len(outcome.stored)} of the "
                        f"{want} nodes needed: {outcome.failure_text()}")
    return len(data)
