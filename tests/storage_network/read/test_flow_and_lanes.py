"""Where the batched reader sends each chunk's first picks (storage_network.read.flow)
and how a node's batch reads queue (NetworkClient.lane)."""

from __future__ import annotations

import asyncio

from storage_network.client import LANES, NetworkClient
from storage_network.config import Network, NodeInfo
from storage_network.read.chunk_fetch import HedgedFetch
from storage_network.read.flow import PARITY_SECONDS, NodeFlow
from storage_network.read.locate import ShardHolders
from storage_network.wire.manifest import ChunkRef, Manifest

NODES = tuple(NodeInfo(f"node-{i}", f"http://127.0.0.1:{1000 + i}") for i in range(1, 7))


def test_flow_tracks_pending_bytes_and_rates() -> None:
    flow = NodeFlow()
    flow.asked("a", 1000)
    assert flow.finish("a") == 0  # no rate yet: every node looks the same
    flow.answered("a", 1000, 1000, 0.01)  # 100 kB/s
    assert flow.pending["a"] == 0 and flow.rate["a"] == 100_000
    flow.asked("a", 100_000)  # one second of work at that rate
    assert flow.finish("a") == 1.0
    assert flow.cost("a", parity=True) == 1.0 + PARITY_SECONDS
    flow.answered("a", 50_000, 0, 0.0)  # a failure: the rate stays, pending drops
    assert flow.rate["a"] == 100_000 and flow.pending["a"] == 50_000
    flow.answered("a", 50_000, 50_000, 0.1)  # 500 kB/s, moving average
    assert 100_000 < flow.rate["a"] < 500_000


def fetch(net: NetworkClient, manifest: Manifest, ref: ChunkRef) -> HedgedFetch:
    holders = ShardHolders(list(NODES))
    for index, node in enumerate(NODES):
        holders.add(index, node)
    return HedgedFetch(net, manifest, ref, holders)


async def test_first_picks_go_around_a_node_far_behind() -> None:
    net = NetworkClient(Network(nodes=NODES, k=4, m=2))
    try:
        ref = ChunkRef(bytes(32), bytes(32), 100_000, 40_000)
        manifest = Manifest("isa_l_rs_cauchy", 4, 2, (ref,))
        flow = NodeFlow()
        picks = fetch(net, manifest, ref).first_picks(flow)
        assert [c.index for c in picks] == [0, 1, 2, 3]  # equal nodes: the data shards
        assert flow.pending["node-1"] == 10_000  # each pick counted as asked
        flow = NodeFlow()
        for node in NODES:
            flow.answered(node.id, 0, 1_000_000, 1.0)  # all at 1 MB/s
        flow.asked("node-2", 2_000_000)  # two seconds behind
        picks = fetch(net, manifest, ref).first_picks(flow)
        assert sorted(c.index for c in picks) == [0, 2, 3, 4]  # parity instead of node-2's
        # without a flow: the usual order, whatever node-2 has to send
        assert [c.index for c in fetch(net, manifest, ref).first_picks()] == [0, 1, 2, 3]
    finally:
        net.pool.shutdown()


async def test_first_picks_balance_queues_to_within_the_parity_cost() -> None:
    """node-2 (data shard 1) is behind by a little more than the parity cost: its
    shard is read from parity; a little less: the data shard is read."""
    net = NetworkClient(Network(nodes=NODES, k=4, m=2))
    try:
        ref = ChunkRef(bytes(32), bytes(32), 100_000, 40_000)
        manifest = Manifest("isa_l_rs_cauchy", 4, 2, (ref,))
        for behind, indices in ((1.5, [0, 2, 3, 4]), (0.5, [0, 1, 2, 3])):
            flow = NodeFlow()
            for node in NODES:
                flow.answered(node.id, 0, 1_000_000, 1.0)  # all at 1 MB/s
            flow.asked("node-2", int(behind * PARITY_SECONDS * 1_000_000))
            picks = fetch(net, manifest, ref).first_picks(flow)
            assert sorted(c.index for c in picks) == indices, behind
    finally:
        net.pool.shutdown()


async def test_a_nodes_lanes_hold_a_few_reads_and_serve_the_rest_in_order() -> None:
    net = NetworkClient(Network(nodes=NODES, k=4, m=2))
    try:
        lane = net.lane("node-1")
        assert net.lane("node-1") is lane and net.lane("node-2") is not lane
        order: list[int] = []
        release = asyncio.Event()

        async def read(number: int) -> None:
            async with lane:
                order.append(number)
                await release.wait()

        tasks = [asyncio.create_task(read(i)) for i in range(LANES + 3)]
        await asyncio.sleep(0.01)
        assert order == list(range(LANES))  # the others wait
        release.set()
        await asyncio.gather(*tasks)
        assert order == list(range(LANES + 3))  # first come, first served
    finally:
        net.pool.shutdown()
