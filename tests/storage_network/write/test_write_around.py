"""store_payload writes around dead, full and stopped nodes (real node processes).

Each test starts its own network (4-of-6) and checks, on the nodes' disks,
where every shard landed: n shards on n distinct nodes, past the missing
ones along each chunk's rendezvous ranking, never two shards of a stripe on
one node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from nixshard.localnet import FAULT_ENV, LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import NodeError
from storage_network.nodes.placement import ranking
from storage_network.wire.manifest import Manifest
from storage_network.write import shard_upload
from storage_network.write.publish import publish_record, store_payload
from tests.support.disk import fill_up, tmpfs
from tests.support.metrics import scrape

from ..conftest import (
    SMALL_CHUNKS,
    K,
    M,
    network_client,
    payload,
    read_back,
    record_key,
    running_network,
)
from .write_faults import nodes_of, shard_holders, stopped

N = K + M


@pytest.fixture
def net8(tmp_path: Path) -> Iterator[LocalNetwork]:
    """8 nodes, 4-of-6: two spares past every chunk's six homes."""
    with running_network(tmp_path / "net", 8) as local:
        yield local


client = partial(network_client, hedge_after=5.0)
"""A client whose uploads race a node only after ``hedge_after`` seconds (5 s: the
tests of dead and full nodes check exact placements, which a healthy node raced on a
loaded machine, e.g. one waiting on a syncfs, would change)."""


def assert_spread(local: LocalNetwork, manifest: Manifest, shards: int,
                  absent: set[str]) -> list[dict[int, set[str]]]:
    """Every chunk has ``shards`` distinct indices on as many distinct nodes, none of
    ``absent``, and no node holds two shards of a stripe."""
    holders = shard_holders(local, manifest)
    for number, have in enumerate(holders):
        nodes = nodes_of(have)
        assert len(have) == shards, (number, have)
        assert len(nodes) == len(set(nodes)), f"chunk {number}: a node holds two shards {have}"
        assert not set(nodes) & absent, (number, have)
    return holders


async def test_a_dead_home_sends_its_shards_down_the_ranking(net8: LocalNetwork) -> None:
    dead = "node-3"
    net8.node(dead).kill()
    data = payload(7001, 400_000)
    async with client(net8) as net:
        manifest, stats = await store_payload(net, net8.publisher, [data])
        assert stats.degraded_chunks == 0
        assert set(stats.passed_over) == {dead}
        holders = assert_spread(net8, manifest, N, {dead})
        moved = 0
        for ref, have in zip(manifest.chunks, holders, strict=True):
            rank = [node.id for node in ranking(net.network.nodes, ref.chunk_id)]
            if dead in rank[:N]:  # its shard went to the first spare, position n
                index = rank.index(dead)
                assert have[index] == {rank[N]}, (index, have, rank)
                moved += 1
            else:
                assert all(have[i] == {rank[i]} for i in range(N))
        assert moved > 0
        await publish_record(net, net8.publisher, record_key(7001), b"meta", manifest)
        assert await read_back(net, manifest) == data


async def test_a_full_disk_refuses_and_its_shards_go_elsewhere(tmp_path: Path) -> None:
    """A real tmpfs as one node's data directory, filled to the last byte: 507."""
    publisher = new_publisher("write-full-1")[0]
    with tmpfs(tmp_path / "net" / "node-2", 2 * 1024 * 1024) as disk, \
            running_network(tmp_path / "net", 8, publisher) as local:
        fill_up(disk)
        async with client(local) as net:
            data = payload(7002, 300_000)
            manifest, stats = await store_payload(net, publisher, [data])
            assert "507" in stats.passed_over["node-2"], stats.passed_over
            assert stats.degraded_chunks == 0
            assert_spread(local, manifest, N, {"node-2"})
            assert await read_back(net, manifest) == data


async def test_a_stopped_node_is_raced_not_waited_for(net8: LocalNetwork) -> None:
    """A SIGSTOPped node accepts connections and never answers; the client would wait
    600 s for it, the upload races it on spares after hedge_after."""
    slow = "node-5"
    data = payload(7003, 300_000)
    async with client(net8, timeout=600.0, hedge_after=0.5) as net:
        with stopped(net8.node(slow)):
            async with asyncio.timeout(120):  # a bound on waiting, far below 600 s
                manifest, stats = await store_payload(net, net8.publisher, [data])
            assert "raced on other nodes" in stats.passed_over[slow], stats.passed_over
            assert stats.degraded_chunks == 0
            assert_spread(net8, manifest, N, {slow})
        assert await read_back(net, manifest) == data


async def test_a_pusher_whose_loop_stalls_races_no_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two homes answer ``has`` after 1 s; the other puts end at once and the pusher's
    own loop then stalls 2.5 s, past its 2 s hedge wait.  That is its own load: the two
    late nodes are not raced (no spare is asked), passed over or marked slow, and every
    shard lands on its home."""
    finish = shard_upload._BatchUpload._finish
    stalls = []

    def busy_finish(self: shard_upload._BatchUpload, *args: Any) -> None:
        finish(self, *args)
        if not stalls and len(self.running) <= M:  # only the two late puts are left
            stalls.append(1)
            time.sleep(2.5)  # the pusher busy with other work (encoding, say)

    monkeypatch.setattr(shard_upload._BatchUpload, "_finish", busy_finish)
    with LocalNetwork(tmp_path / "net", new_publisher("sn-test-1")[0]) as local:
        network = local.start_nodes(8, K, M, SMALL_CHUNKS,  # spares to race on
                                    node_args={i: ("--fault", "slow-has=1") for i in (2, 5)},
                                    node_env=FAULT_ENV)
        data = payload(7007, 200_000)
        async with NetworkClient(network, timeout=30.0, hedge_after=2.0) as net:
            manifest, stats = await store_payload(net, local.publisher, [data])
            assert stalls
            # one has (and batch put) per node: no node was asked again as a spare
            has_asked = [scrape(node.url, "nixshard_node_requests_total",
                                route="/shards/has", method="POST", status="200")
                         for node in local.nodes]
            assert max(has_asked) == 1, has_asked
            assert stats.passed_over == {}
            assert not [s.node_id for s in net.health.statuses(n.id for n in network.nodes)
                        if s.slow_events or s.failures]
            holders = assert_spread(local, manifest, N, set())
            for ref, have in zip(manifest.chunks, holders, strict=True):
                rank = [node.id for node in ranking(network.nodes, ref.chunk_id)]
                assert all(have[i] == {rank[i]} for i in range(N))


async def test_one_node_short_commits_degraded(fresh_net: LocalNetwork) -> None:
    """6 nodes, one dead: every chunk gets k + 1 = 5 shards; the push commits degraded."""
    fresh_net.node("node-6").kill()
    data = payload(7004, 200_000)
    async with client(fresh_net) as net:
        manifest, stats = await store_payload(net, fresh_net.publisher, [data])
        assert stats.degraded_chunks == stats.chunks == len(manifest.chunks) > 1
        assert_spread(fresh_net, manifest, K + 1, {"node-6"})
        await publish_record(net, fresh_net.publisher, record_key(7004), b"meta", manifest)
        assert await read_back(net, manifest) == data


async def test_two_nodes_short_stores_no_record(fresh_net: LocalNetwork) -> None:
    """6 nodes, two dead: k shards a chunk is below the k + 1 minimum: NodeError."""
    for node_id in ("node-2", "node-4"):
        fresh_net.node(node_id).kill()
    async with client(fresh_net) as net:
        with pytest.raises(NodeError, match=r"4 of 6 shards stored, at least 5 needed "
                                            r"\(k \+ 1\); nodes passed over: node node-[24]"):
            await store_payload(net, fresh_net.publisher, [payload(7005, 100_000)])


async def test_a_spare_holding_a_shard_of_the_stripe_takes_no_second(tmp_path: Path) -> None:
    """7 nodes, one chunk: a degraded push put shard a on the only spare; a second push
    with another home down must not give that spare a second shard of the stripe."""
    with running_network(tmp_path / "net", 7) as local:
        data = payload(7006, 3000)  # below the minimum chunk size: one chunk
        assert local.network is not None
        async with client(local) as net:
            manifest, _ = await store_payload(net, local.publisher, [data])  # learn the chunk
        rank = [node.id for node in ranking(local.network.nodes, manifest.chunks[0].chunk_id)]
        for number in range(1, 8):
            for path in (local.node_dir(number) / "shards").rglob("*"):
                if path.is_file():
                    path.unlink()
        spare = rank[N]
        local.node(rank[0]).kill()
        async with client(local) as net:
            first, stats = await store_payload(net, local.publisher, [data])
        assert first == manifest and stats.degraded_chunks == 0
        assert shard_holders(local, manifest)[0][0] == {spare}
        local.restart_node(int(rank[0].split("-")[1]))
        local.node(rank[1]).kill()
        async with client(local) as net:
            second, stats = await store_payload(net, local.publisher, [data])
        (have,) = shard_holders(local, manifest)
        assert nodes_of(have).count(spare) == 1, have
        assert spare in have[0] and have[0] <= {rank[0], spare}
        assert have[1] == {rank[1]}  # from the first push; the dead node holds it still
        assert stats.degraded_chunks == 1  # 5 distinct shards: shard 1 has no node left
