"""A client goes on under a new epoch of the network (NetworkClient.adopt): real nodes."""

from __future__ import annotations

import dataclasses

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import NodeError
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.membership import with_node
from storage_network.wire.stripe import shard_id

from .conftest import publish, read_back


async def test_a_joined_node_gets_new_shards_without_a_new_client(
        fresh_net: LocalNetwork) -> None:
    assert fresh_net.network is not None
    old = fresh_net.network
    async with NetworkClient(old) as net:
        before = [await publish(net, fresh_net, seed, size=120_000) for seed in (41, 42)]
        joined = fresh_net.add_node()
        grown = with_node(old, NodeInfo(joined.name, joined.url))
        await net.adopt(grown)
        assert net.network is grown and joined.name in net.nodes
        key, data, manifest = await publish(net, fresh_net, 43, size=400_000)
        ids = [shard_id(ref.root, i) for ref in manifest.chunks for i in range(manifest.n)]
        held = await net.nodes[joined.name].has(ids)
        assert held, "the joined node got no shard of a push made after the switch"
        assert await read_back(net, manifest) == data
        assert (await fetch_record(net, key)).manifest == manifest
        for old_key, old_data, old_manifest in before:  # written under the old epoch
            assert (await fetch_record(net, old_key)).manifest == old_manifest
            assert await read_back(net, old_manifest) == old_data


async def test_a_moved_node_is_asked_at_its_new_url(fresh_net: LocalNetwork) -> None:
    """A node listed at a new URL (here: a dead one first, then its real one)."""
    assert fresh_net.network is not None
    real = fresh_net.network
    first = real.nodes[0]
    wrong = dataclasses.replace(real, nodes=(NodeInfo(first.id, "http://127.0.0.1:9"),
                                             *real.nodes[1:]))
    async with NetworkClient(wrong) as net:
        _, data, manifest = await publish(net, fresh_net, 44)  # around the dead URL
        ids = [shard_id(ref.root, i) for ref in manifest.chunks for i in range(manifest.n)]
        with pytest.raises(NodeError):
            await net.nodes[first.id].has(ids)
        await net.adopt(real)
        assert net.nodes[first.id].url == first.url
        assert await net.nodes[first.id].has(ids) == set()  # answers; holds nothing new
        assert await read_back(net, manifest) == data
