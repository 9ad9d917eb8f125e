"""Helpers of the read-path fault tests: nodes restarted with test faults, patient readers.

Faulty nodes run ``nixshard node --fault ...`` (TEST-ONLY; the network's nodes
need :data:`nixshard.localnet.FAULT_ENV`, as ``net6`` of ../conftest.py has).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from nixshard.localnet import FAULT_ENV, LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.nodes.placement import shard_nodes
from storage_network.wire.manifest import Manifest
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import store_payload

from ..conftest import network_client, payload

HEDGE = 0.2
"""A reader's ``hedge_after`` in tests where a slow node must be hedged past."""
PATIENT = 30.0
"""Long enough that a reader which waited for a stalled node (stall=10) would have been
served by it: a node that served nothing was not waited for."""

client = partial(network_client, timeout=PATIENT)
"""``client(local, hedge_after=..., scores=...)``: a reader with a :data:`PATIENT` timeout."""


def number(node: NodeInfo) -> int:
    """The node's number in its :class:`LocalNetwork` (``node-3`` -> 3)."""
    return int(node.id.removeprefix("node-"))


@contextmanager
def fault(local: LocalNetwork, node: NodeInfo, *args: str) -> Iterator[None]:
    """Run ``node`` with ``--fault`` args; afterwards run it well-behaved again."""
    local.nodes[number(node) - 1].kill()
    local.restart_node(number(node), extra=args, env=FAULT_ENV)
    try:
        yield
    finally:
        local.nodes[number(node) - 1].kill()  # do not wait for stalled handlers
        local.restart_node(number(node))


async def stored(local: LocalNetwork, seed: int, size: int = 200_000) -> tuple[bytes, Manifest]:
    """``payload(seed, size)`` stored (no record): the data and its manifest."""
    data = payload(seed, size)
    async with client(local) as net:
        manifest, _ = await store_payload(net, local.publisher, [data])
    assert len(manifest.chunks) > 3
    return data, manifest


def homes(net: NetworkClient, manifest: Manifest, chunk: int) -> list[NodeInfo]:
    """The nodes of chunk ``chunk``'s shards, in shard order."""
    return shard_nodes(net.network.nodes, manifest.chunks[chunk].chunk_id, manifest.n)


async def homes_lose_three(local: LocalNetwork, manifest: Manifest) -> list[NodeInfo]:
    """Make a reader ask every node about chunk 0; returns the chunk's homes.

    Shard 1 of chunk 0 gets a second copy on the home of shard 5, then the
    homes of shards 1..3 lose theirs: the homes answer 3 of the 4 needed, so
    a reader asks every node for the missing ones (where a node lying about
    what it holds is believed), and one real copy of each still exists.
    """
    ref = manifest.chunks[0]
    async with client(local) as net:
        rank = homes(net, manifest, 0)
        body = await net.nodes[rank[1].id].get_shard(shard_id(ref.root, 1), 1 << 20)
        assert body is not None
        assert await net.nodes[rank[5].id].put_shard(shard_id(ref.root, 1), body,
                                                     local.publisher)
    for i in (1, 2, 3):
        sid = shard_id(ref.root, i)
        (local.root / rank[i].id / "shards" / sid[:2] / sid).unlink()
    return rank


def victim_of(local: LocalNetwork, manifest: Manifest) -> NodeInfo:
    """The node holding data shard 0 of the first chunk."""
    assert local.network is not None
    return shard_nodes(local.network.nodes, manifest.chunks[0].chunk_id, manifest.n)[0]
