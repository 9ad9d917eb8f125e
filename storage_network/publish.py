"""The write path: payload -> chunks -> stripes -> shards on nodes -> record last.

:func:`store_payload` streams a payload (any iterable of byte pieces) through
the chunker, encodes chunks on the client's thread pool (zstd releases the GIL) with a
bounded number in flight, asks each node in one request per batch which
shards it already holds, uploads only the missing ones (one batch request
per node, :mod:`storage_network.shard_batch`), and returns the manifest.
Memory is bounded by ``window`` encoded chunks, not by payload size.
:func:`publish_record` then writes the signed record: the commit point, so a
reader never sees a record whose shards are not all stored.

Garbage collection (:mod:`storage_network.gc`) may run meanwhile.  The
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
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .auth import Publisher
from .chunker import iter_chunks
from .codec import EncodedChunk, StripeCodec
from .errors import NodeError
from .manifest import ChunkRef, Manifest
from .network_client import NetworkClient
from .placement import record_nodes, shard_nodes
from .record import seal_record
from .stripe import shard_id

BATCH_CHUNKS = 32
MAX_PUTS_IN_FLIGHT = 12  # batch requests, each one node's share of a batch


@dataclass
class PublishStats:
    """What one or more publishes did, in bytes and counts.

    Attributes:
        touched_at: unix time (publisher's clock) just before the first shard
            was touched or written; None when nothing was.  Pass it to
            :func:`publish_record` as ``touched_at``.
    """

    payload_bytes: int = 0
    chunks: int = 0
    chunks_reused: int = 0
    stored_bytes: int = 0
    reused_bytes: int = 0
    touched_at: float | None = None

    def add(self, other: PublishStats) -> None:
        """Add ``other``'s figures to these (``touched_at``: the earlier one)."""
        for name in ("payload_bytes", "chunks", "chunks_reused", "stored_bytes",
                     "reused_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        times = [t for t in (self.touched_at, other.touched_at) if t is not None]
        self.touched_at = min(times) if times else None


async def _encoded_chunks(pieces: Iterable[bytes], net: NetworkClient, codec: StripeCodec,
                          window: int) -> AsyncIterator[EncodedChunk]:
    """Encoded chunks in payload order; at most ``window`` being encoded at once."""
    loop = asyncio.get_running_loop()
    chunks = iter_chunks(pieces, net.network.chunking)
    pending: deque[asyncio.Future[EncodedChunk]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="nixshard-read") as reader:
        while True:
            chunk = await loop.run_in_executor(reader, next, chunks, None)
            if chunk is None:
                break
            pending.append(loop.run_in_executor(net.pool, codec.encode, chunk))
            if len(pending) >= window:
                yield await pending.popleft()
    while pending:
        yield await pending.popleft()


async def _upload_batch(net: NetworkClient, batch: list[EncodedChunk], publisher: Publisher,
                        stats: PublishStats, limit: asyncio.Semaphore) -> None:
    """Store every shard of ``batch`` its node does not hold yet: per node one
    signed ``has`` (which touches the held ones) and one batch put of the rest."""
    placed = [[(node.id, shard_id(enc.ref.root, index), body) for index, (node, body) in
               enumerate(zip(shard_nodes(net.network.nodes, enc.ref.chunk_id, net.network.n),
                             enc.bodies, strict=True))]
              for enc in batch]
    wanted: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for shards in placed:
        for node_id, sid, body in shards:
            wanted[node_id].append((sid, body))

    async def has(node_id: str) -> set[str]:
        # touch: the held ones get a fresh mtime, so a gc running now keeps them
        return await net.nodes[node_id].has([sid for sid, _ in wanted[node_id]],
                                            touch=publisher)

    held = dict(zip(wanted, await asyncio.gather(*(has(nid) for nid in wanted)), strict=True))

    async def put(node_id: str, items: list[tuple[str, bytes]]) -> None:
        async with limit:
            await net.nodes[node_id].put_shards(items, publisher)

    puts = []
    for node_id, items in wanted.items():
        missing = [(sid, body) for sid, body in items if sid not in held[node_id]]
        stats.stored_bytes += sum(len(body) for _, body in missing)
        stats.reused_bytes += sum(len(body) for sid, body in items if sid in held[node_id])
        if missing:
            puts.append(put(node_id, missing))
    await asyncio.gather(*puts)
    stats.chunks_reused += sum(all(sid in held[node_id] for node_id, sid, _ in shards)
                               for shards in placed)


async def store_payload(net: NetworkClient, publisher: Publisher, pieces: Iterable[bytes],
                        window: int = 2 * BATCH_CHUNKS) -> tuple[Manifest, PublishStats]:
    """Chunk, encode and store a payload; return its manifest and what was stored.

    Args:
        pieces: the payload as byte pieces of any size (read on a helper thread).
        window: chunks encoded ahead at most (memory bound; default 2 batches).
            Encoding runs on the network client's pool.

    Raises:
        NodeError: a node could not store a shard (the payload is then not
            published; shards already stored are harmless and reused later).
    """
    nw = net.network
    codec = net.codec(nw.codec, nw.k, nw.m)
    stats = PublishStats()
    refs: list[ChunkRef] = []
    limit = asyncio.Semaphore(MAX_PUTS_IN_FLIGHT)
    uploads: deque[asyncio.Task[None]] = deque()
    try:
        batch: list[EncodedChunk] = []
        async for enc in _encoded_chunks(pieces, net, codec, window):
            refs.append(enc.ref)
            stats.chunks += 1
            stats.payload_bytes += enc.ref.size
            batch.append(enc)
            if len(batch) >= BATCH_CHUNKS:
                if stats.touched_at is None:
                    stats.touched_at = time.time()
                uploads.append(asyncio.create_task(
                    _upload_batch(net, batch, publisher, stats, limit)))
                batch = []
                if len(uploads) > 1:
                    await uploads.popleft()
        if batch:
            if stats.touched_at is None:
                stats.touched_at = time.time()
            uploads.append(asyncio.create_task(_upload_batch(net, batch, publisher, stats, limit)))
        while uploads:
            await uploads.popleft()
    finally:
        for task in uploads:
            task.cancel()
    return Manifest(nw.codec, nw.k, nw.m, tuple(refs)), stats


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


async def publish_record(net: NetworkClient, publisher: Publisher, record_key: str,
                         metadata: bytes, manifest: Manifest, *,
                         touched_at: float | None = None) -> int:
    """Sign and write the record to the first ``record_replicas`` nodes of its ranking.

    All of them must store it, as every shard's node must: readers rely on
    it, since a reachable top-ranked node without the record proves the
    record absent.  Returns the record size in bytes.

    Args:
        touched_at: :attr:`PublishStats.touched_at` from :func:`store_payload`;
            when given, the record is refused if it comes too late (see
            :func:`check_push_window`).

    Raises:
        NodeError: one of those nodes did not store it (the record may then be
            on some of them; publishing again completes it), or the push took
            longer than half of ``gc_grace_seconds`` (nothing written).
    """
    check_push_window(net, touched_at)
    data = seal_record(publisher, record_key, metadata, manifest)
    targets = record_nodes(net.network.nodes, record_key)[:net.network.record_replicas]
    results = await asyncio.gather(
        *(net.nodes[n.id].put_record(record_key, data, publisher) for n in targets),
        return_exceptions=True)
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    if errors:
        raise NodeError(f"record {record_key} not stored on {len(errors)} of {len(targets)} "
                        "nodes: " + "; ".join(errors))
    return len(data)
