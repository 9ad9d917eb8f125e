"""The availability plan of a read: every chunk's shard holders, checked before a response.

:func:`plan_fetch` finds every chunk's shards with
:func:`~storage_network.read.locate.locate_shards` (one ``has`` request per
node; shards past the first n nodes of a ranking are found too) and fails
with :class:`ChunkUnavailableError` if any chunk has fewer than k claimed:
callers do this before they commit to a response.  ``has`` answers slower
than the client's ``hedge_after`` are not waited for once every chunk has
k claimed shards, but they are not dropped either: they go on in the
background and add their holders to the plan when they come.

The record itself is found by :func:`storage_network.read.record_lookup.fetch_record`;
the plan is then streamed by :func:`storage_network.read.stream.stream_payload`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError
from storage_network.read.locate import locate_shards
from storage_network.wire.manifest import Manifest


@dataclass(frozen=True)
class FetchPlan:
    """Where each chunk's shards are.

    Attributes:
        manifest: what is fetched.
        holders: per chunk, shard index -> the nodes claiming it, in the
            chunk's ranking order; at least k indices per chunk.  From
            :func:`plan_fetch` these are
            :class:`~storage_network.read.locate.ShardHolders`, which late ``has``
            answers keep adding to (a slice of them, for a sub-range, shares that).
        early: the fetches of the first windows of chunks, started at the chunks'
            homes while the ``has`` round ran (see
            :func:`~storage_network.read.stream.plan_stream`), in window order; empty
            from :func:`plan_fetch`.  Only a stream of the whole plan uses them.
    """

    manifest: Manifest
    holders: tuple[dict[int, list[NodeInfo]], ...]
    early: tuple[asyncio.Task[list[bytes]], ...] = ()

    def drop_early(self) -> None:
        """Cancel :attr:`early` (for a stream that does not start at chunk 0)."""
        for task in self.early:
            task.cancel()


async def plan_fetch(net: NetworkClient, manifest: Manifest) -> FetchPlan:
    """Find every chunk's shards; check each chunk has at least k claimed.

    Node failures are reported to ``net.health`` (see
    :func:`~storage_network.read.locate.locate_shards`).

    Raises:
        ChunkUnavailableError: the network has fewer than n nodes, or a
            chunk has fewer than k claimed shards (naming the first such
            chunk and the nodes that could not be reached).
    """
    nodes = net.network.nodes
    if len(nodes) < manifest.n:
        raise ChunkUnavailableError(
            f"manifest wants {manifest.n} shards a chunk, the network has {len(nodes)} nodes")
    found = await locate_shards(net, manifest.chunks, manifest.k, manifest.m,
                                want=manifest.k, settle=net.hedge_after)
    for number, have in enumerate(found.holders):
        if len(have) < manifest.k:
            down = ", ".join(sorted(found.unreachable)) or "none"
            raise ChunkUnavailableError(
                f"chunk {number} of {len(manifest.chunks)}: {len(have)} of {manifest.n} shards "
                f"reachable, {manifest.k} needed (unreachable nodes: {down})")
    return FetchPlan(manifest, tuple(found.holders))
