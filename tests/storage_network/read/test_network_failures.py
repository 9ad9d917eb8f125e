"""Publish and fetch with dead nodes: every test starts its own 6-node network (k=4, m=2)."""

from __future__ import annotations

from functools import partial

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.errors import (
    ChunkUnavailableError,
    NodeError,
    NotFoundError,
    RecordUnavailableError,
)
from storage_network.nodes.placement import record_nodes, shard_nodes
from storage_network.read.plan import plan_fetch
from storage_network.read.record_lookup import fetch_record
from storage_network.read.stream import stream_payload
from storage_network.write.publish import store_payload

from ..conftest import K, M, network_client, payload, publish, read_back, record_key

REPLICAS = 3


client = partial(network_client, record_replicas=REPLICAS)


def kill(local: LocalNetwork, node_ids: list[str]) -> None:
    for node_id in node_ids:
        local.node(node_id).kill()


async def test_round_trip_with_m_nodes_dead(fresh_net: LocalNetwork) -> None:
    async with client(fresh_net) as net:
        key, data, manifest = await publish(net, fresh_net, 1)
        # kill the nodes of data shards 0 and 1 of the first chunk: it must be decoded
        first = shard_nodes(net.network.nodes, manifest.chunks[0].chunk_id, K + M)
        dead = [first[0].id, first[1].id]
        kill(fresh_net, dead)

        record = await fetch_record(net, key)
        assert record.manifest == manifest
        plan = await plan_fetch(net, manifest)
        for holders in plan.holders:
            assert len(holders) == K + M - len(dead)
            assert not {n.id for nodes in holders.values() for n in nodes} & set(dead)
        assert set(plan.holders[0]) == {2, 3, 4, 5}
        assert await read_back(net, manifest) == data

        # writing a new payload needs every shard's node: it fails, naming a dead one
        with pytest.raises(NodeError, match=rf"node ({dead[0]}|{dead[1]}): POST /shards/has"):
            await store_payload(net, fresh_net.publisher, [payload(2, 50_000)])


async def test_m_plus_1_nodes_dead(fresh_net: LocalNetwork) -> None:
    async with client(fresh_net) as net:
        _, _, manifest = await publish(net, fresh_net, 3)
        plan = await plan_fetch(net, manifest)  # made while every node is up
        dead = sorted(n.id for n in net.network.nodes)[1:M + 2]
        kill(fresh_net, dead)

        with pytest.raises(ChunkUnavailableError) as info:
            await plan_fetch(net, manifest)
        msg = str(info.value)
        assert msg.startswith(f"chunk 0 of {len(manifest.chunks)}: 3 of 6 shards reachable, "
                              "4 needed")
        assert f"(unreachable nodes: {', '.join(dead)})" in msg

        # the old plan no longer works either: the stream fails, it never ends short
        with pytest.raises(ChunkUnavailableError, match="3 of 4 needed fragments"):
            async for _ in stream_payload(net, plan):
                pass


async def test_fetch_record_with_m_plus_1_of_its_window_dead(fresh_net: LocalNetwork) -> None:
    """Fewer than R nodes of the window answer: the reader cannot tell (503, not 404)."""
    async with client(fresh_net) as net:
        key, _, _ = await publish(net, fresh_net, 4, size=20_000)
        ranked = [n.id for n in record_nodes(net.network.nodes, key)]
        for node_id in ranked[:REPLICAS]:
            assert (fresh_net.root / node_id / "records" / key).is_file()
        kill(fresh_net, ranked[:REPLICAS])
        with pytest.raises(RecordUnavailableError,
                           match=f"record {key}: 2 of the 5 nodes of its window answered, "
                                 "3 needed, and none of the 1 answering past it holds a "
                                 "version; ") as got:
            await fetch_record(net, key)
        for node_id in ranked[:REPLICAS]:  # each dead one is named (in no set order)
            assert f"node {node_id}: GET /records/{key} failed" in str(got.value)


async def test_miss_with_m_nodes_down_is_still_absent(fresh_net: LocalNetwork) -> None:
    async with client(fresh_net) as net:
        key = record_key(8)
        ranked = [n.id for n in record_nodes(net.network.nodes, key)]
        kill(fresh_net, ranked[:M])
        with pytest.raises(NotFoundError, match=f"record {key}: absent on 3 of the 5 nodes asked"):
            await fetch_record(net, key)


async def test_record_found_past_its_first_replicas(fresh_net: LocalNetwork) -> None:
    """A version anywhere in the window is found: R answers always include one holder."""
    async with client(fresh_net) as net:
        key, _, _ = await publish(net, fresh_net, 9, size=20_000)
        ranked = [n.id for n in record_nodes(net.network.nodes, key)]
        data = (fresh_net.root / ranked[0] / "records" / key).read_bytes()
        await net.nodes[ranked[4]].put_record(key, data, fresh_net.publisher)
        kill(fresh_net, ranked[:M])
        (fresh_net.root / ranked[2] / "records" / key).unlink()  # lost its copy
        record = await fetch_record(net, key)
        assert record.key == key
