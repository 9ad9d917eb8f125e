"""Membership on real nodes: reads keep working while nodes join and leave; repair follows."""

from __future__ import annotations

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.membership import with_node, without_node
from storage_network.upkeep.repair import repair_network

from ..conftest import publish, read_back


async def test_reads_survive_a_join_and_a_leave_and_repair_follows(
        fresh_net: LocalNetwork) -> None:
    assert fresh_net.network is not None
    old = fresh_net.network
    async with NetworkClient(old) as net:
        keys = [await publish(net, fresh_net, seed, size=120_000) for seed in (21, 22, 23)]
    joined = fresh_net.add_node()
    grown = with_node(old, NodeInfo(joined.name, joined.url))
    async with NetworkClient(grown) as net:  # a reader with the new file, nothing moved yet
        for key, data, manifest in keys:
            assert (await fetch_record(net, key)).manifest == manifest
            assert await read_back(net, manifest) == data
        report = await repair_network(net, fresh_net.publisher)
        assert report.complete and report.degraded == 0  # every stripe still whole

    leaving = grown.nodes[0].id
    shrunk = without_node(grown, leaving)
    fresh_net.nodes[0].stop()  # the node leaves with its shards
    async with NetworkClient(shrunk) as net:
        for _, data, manifest in keys:
            assert await read_back(net, manifest) == data  # m = 2 covers one missing node
        report = await repair_network(net, fresh_net.publisher)
        assert report.complete, report.to_json()
        assert report.shards_written > 0
        again = await repair_network(net, fresh_net.publisher)
        assert again.degraded == 0
    # Two more nodes go: still readable, since the leaver's shards were rebuilt.
    for proc in fresh_net.nodes[1:3]:
        proc.kill()
    async with NetworkClient(shrunk) as net:
        for key, data, manifest in keys:
            assert (await fetch_record(net, key)).key == key
            assert await read_back(net, manifest) == data
