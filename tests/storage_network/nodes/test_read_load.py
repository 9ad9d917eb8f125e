"""Timeouts measure the node, not the reader: a busy reader counts nothing against nodes.

Real node processes.  Many concurrent reads through few slots per node queue
inside the client (their deadlines do not run there); a reader whose own
event loop stalls past a request's deadline gets a timeout blamed on itself,
asks again, and marks no node failed or slow.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nixshard.localnet import FAULT_ENV, LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.nodes.limits import Deadlines
from storage_network.write.publish import store_payload

from ..conftest import SMALL_CHUNKS, K, M, payload, read_back, running_network

READERS = 24
SLOTS = 2


def assert_nothing_against(net: NetworkClient) -> None:
    statuses = net.health.statuses(n.id for n in net.network.nodes)
    assert [(s.node_id, s.failures, s.standing) for s in statuses if s.failures] == []
    assert not [s.node_id for s in statuses if s.benched]


async def test_many_concurrent_readers_through_few_slots(tmp_path: Path) -> None:
    """24 readers at once of a 1.5 MB payload (about 90 chunks), 2 slots a node."""
    with running_network(tmp_path / "net", 8) as local:
        assert local.network is not None
        data = payload(70, 1_500_000)
        async with NetworkClient(local.network, timeout=10.0, slots=SLOTS) as net:
            manifest, _ = await store_payload(net, local.publisher, [data])
            assert len(manifest.chunks) > 64  # more than one window
            results = await asyncio.gather(*(read_back(net, manifest)
                                             for _ in range(READERS)))
            assert_nothing_against(net)
    assert all(got == data for got in results)


async def test_a_reader_whose_loop_stalls_past_the_deadlines_fails_no_node(
        tmp_path: Path) -> None:
    """Every node answers ``has`` after 1 s; the reader's loop then stalls 2.5 s, past
    the 2 s deadline of every ``has`` in flight: the timeouts are the reader's own,
    so they are asked again and no node is counted failed."""
    with LocalNetwork(tmp_path / "net", new_publisher("sn-test-1")[0]) as local:
        network = local.start_nodes(6, K, M, SMALL_CHUNKS,
                                    node_args={i: ("--fault", "slow-has=1")
                                               for i in range(1, 7)},
                                    node_env=FAULT_ENV)
        data = payload(71, 300_000)
        async with NetworkClient(network, timeout=30.0) as writer:
            manifest, _ = await store_payload(writer, local.publisher, [data])
        deadlines = Deadlines(connect=1.0, first_byte=1.5, stall=1.5, total=2.0)
        async with NetworkClient(network, deadlines=deadlines) as net:
            async def stall_the_loop() -> None:
                await asyncio.sleep(0.3)  # every has request is in flight by now
                time.sleep(2.5)  # noqa: ASYNC251 - the point: the reader's own loop stalls

            got, _ = await asyncio.gather(read_back(net, manifest), stall_the_loop())
            assert got == data
            assert_nothing_against(net)
            assert not [s.node_id for s in net.health.statuses(n.id for n in network.nodes)
                        if s.slow_events]
