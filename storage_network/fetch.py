"""The read path: record lookup, availability plan, verified chunk stream.

- :func:`fetch_record` asks the first ``record_replicas`` nodes of the
  record's rendezvous ranking and verifies the signature.  A publish stores
  the record on all of them, so when one of them answers and none holds a
  valid record (none, or one failing its signature check, which is logged)
  the record is absent (:class:`NotFoundError`); when none answers it
  raises :class:`RecordUnavailableError`.  With ``record_replicas >= m + 1``
  a miss stays a 404 while up to m nodes are down.
- :func:`plan_fetch` asks every node, in one request per node, which of its
  shards it holds, and fails with :class:`ChunkUnavailableError` if any
  chunk has fewer than k reachable shards: callers do this before they
  commit to a response.
- :func:`stream_payload` yields the chunks' zstd frames in order, fetching
  ``prefetch`` chunks ahead.  Each chunk takes its data shards first (no
  decoding then); every shard is checked against the stripe root before
  use, and a node that serves wrong bytes is logged and replaced by another
  shard of the same stripe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .auth import PublisherKey
from .errors import (
    ChunkUnavailableError,
    NodeError,
    NotFoundError,
    RecordError,
    RecordUnavailableError,
    ShardProofError,
)
from .manifest import ChunkRef, Manifest
from .network_client import NetworkClient
from .network_file import NodeInfo
from .placement import record_nodes, shard_nodes
from .record import Record, open_record
from .stripe import shard_id, verify_shard

log = logging.getLogger("nixshard.network")
DEFAULT_PREFETCH = 8


async def _ask_record(net: NetworkClient, node: NodeInfo, key: str,
                      trusted: dict[str, PublisherKey]) -> Record | None | Exception:
    try:
        data = await net.nodes[node.id].get_record(key)
    except NodeError as exc:
        log.info("record %s: %s", key, exc)
        return exc
    if data is None:
        return None
    try:
        return open_record(trusted, key, data)
    except RecordError as exc:
        # A record we cannot trust is no record: it counts as "absent here".
        log.warning("node %s served a bad record for %s: %s", node.id, key, exc)
        return None


async def fetch_record(net: NetworkClient, key: str,
                       trusted: dict[str, PublisherKey] | None = None) -> Record:
    """The verified record under ``key``.

    Args:
        trusted: publisher keys whose records are accepted (default: the
            network file's publishers).

    Raises:
        NotFoundError: a record node answered and none holds a valid record.
        RecordUnavailableError: none of the record's nodes answered.
    """
    keys = net.network.publishers if trusted is None else trusted
    replicas = record_nodes(net.network.nodes, key)[:net.network.record_replicas]
    answers = await asyncio.gather(*(_ask_record(net, n, key, keys) for n in replicas))
    for answer in answers:
        if isinstance(answer, Record):
            return answer
    denials = sum(answer is None for answer in answers)
    if denials:
        raise NotFoundError(f"record {key}: absent on {denials} of its {len(replicas)} nodes")
    raise RecordUnavailableError(
        f"record {key}: none of its {len(replicas)} nodes answered; "
        + "; ".join(str(a) for a in answers))


@dataclass(frozen=True)
class FetchPlan:
    """Where each chunk's shards are: per chunk, shard index -> node that claims it."""

    manifest: Manifest
    holders: tuple[dict[int, NodeInfo], ...]


async def plan_fetch(net: NetworkClient, manifest: Manifest) -> FetchPlan:
    """Check that every chunk of ``manifest`` has at least k reachable shards.

    Raises:
        ChunkUnavailableError: naming the first short chunk and the nodes
            that could not be reached.
    """
    nodes = net.network.nodes
    placed = [shard_nodes(nodes, c.chunk_id, manifest.n) for c in manifest.chunks]
    if any(len(p) < manifest.n for p in placed):
        raise ChunkUnavailableError(
            f"manifest wants {manifest.n} shards a chunk, the network has {len(nodes)} nodes")
    wanted: dict[str, set[str]] = defaultdict(set)
    for ref, pnodes in zip(manifest.chunks, placed, strict=True):
        for index, node in enumerate(pnodes):
            wanted[node.id].add(shard_id(ref.root, index))
    failed: dict[str, str] = {}

    async def ask(node_id: str) -> set[str]:
        try:
            return await net.nodes[node_id].has(sorted(wanted[node_id]))
        except NodeError as exc:
            failed[node_id] = str(exc)
            return set()

    held = dict(zip(wanted, await asyncio.gather(*(ask(nid) for nid in wanted)), strict=True))
    holders = []
    for number, (ref, pnodes) in enumerate(zip(manifest.chunks, placed, strict=True)):
        have = {i: node for i, node in enumerate(pnodes) if shard_id(ref.root, i) in held[node.id]}
        if len(have) < manifest.k:
            down = ", ".join(sorted(failed)) or "none"
            raise ChunkUnavailableError(
                f"chunk {number} of {len(manifest.chunks)}: {len(have)} of {manifest.n} shards "
                f"reachable, {manifest.k} needed (unreachable nodes: {down})")
        holders.append(have)
    return FetchPlan(manifest, tuple(holders))


async def _get_shard(net: NetworkClient, node: NodeInfo, sid: str) -> bytes | None:
    """The shard body a node serves, or None (logged) when it fails or lacks it."""
    try:
        body = await net.nodes[node.id].get_shard(sid)
    except NodeError as exc:
        log.warning("shard %s: %s", sid[:20], exc)
        return None
    if body is None:
        log.warning("node %s claimed shard %s but does not serve it", node.id, sid[:20])
    return body


def _verify_shards(ref: ChunkRef, served: list[tuple[int, NodeInfo, bytes | None]]
                   ) -> dict[int, bytes]:
    """The fragments of the served bodies that prove membership in ``ref``'s stripe.

    A body that fails its proof is logged with the node that served it.
    """
    good: dict[int, bytes] = {}
    for index, node, body in served:
        if body is None:
            continue
        try:
            good[index] = bytes(verify_shard(ref.root, index, body))
        except ShardProofError as exc:
            log.warning("node %s served bad data for shard %s: %s",
                        node.id, shard_id(ref.root, index)[:20], exc)
    return good


async def fetch_chunk(net: NetworkClient, manifest: Manifest, ref: ChunkRef,
                      holders: dict[int, NodeInfo]) -> bytes:
    """Fetch, verify and decode one chunk; returns its zstd frame.

    Hashing and decoding run on the client's pool, off the event loop.

    Raises:
        ChunkUnavailableError: fewer than k shards could be fetched and verified.
    """
    loop = asyncio.get_running_loop()
    candidates = sorted(holders)  # data shards (index < k) first
    fragments: dict[int, bytes] = {}
    pos = 0
    while len(fragments) < manifest.k and pos < len(candidates):
        take = candidates[pos:pos + manifest.k - len(fragments)]
        pos += len(take)
        bodies = await asyncio.gather(
            *(_get_shard(net, holders[i], shard_id(ref.root, i)) for i in take))
        served = [(i, holders[i], body) for i, body in zip(take, bodies, strict=True)]
        fragments.update(await loop.run_in_executor(net.pool, _verify_shards, ref, served))
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    return await loop.run_in_executor(net.pool, codec.decode, ref, fragments)


async def stream_payload(net: NetworkClient, plan: FetchPlan,
                         prefetch: int = DEFAULT_PREFETCH) -> AsyncIterator[bytes]:
    """Yield the zstd frame of every chunk in order, ``prefetch`` chunks ahead.

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt (the caller must
            then abort its response, never end it cleanly).
    """
    manifest = plan.manifest
    tasks: dict[int, asyncio.Task[bytes]] = {}
    nxt = 0
    try:
        for i in range(len(manifest.chunks)):
            while nxt < len(manifest.chunks) and nxt < i + prefetch:
                tasks[nxt] = asyncio.create_task(
                    fetch_chunk(net, manifest, manifest.chunks[nxt], plan.holders[nxt]))
                nxt += 1
            yield await tasks.pop(i)
    finally:
        for task in tasks.values():
            task.cancel()
