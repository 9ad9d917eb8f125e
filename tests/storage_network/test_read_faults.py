"""Byzantine and slow nodes on the read path, against real node processes.

Faulty nodes run ``nixshard node --fault ...`` (TEST-ONLY, needs
``NIXSHARD_TEST_FAULTS=1``).  What the reader did is asserted through
``NetworkClient.health`` (shards served, failures, slow events, benching),
never through wall time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zstandard

from nixshard.localnet import LocalNetwork
from storage_network.client import DEFAULT_HEDGE_AFTER, NetworkClient
from storage_network.config import NodeInfo
from storage_network.nodes.health import NodeHealth, Standing
from storage_network.nodes.placement import ranking, shard_nodes
from storage_network.nodes.scores import Scores
from storage_network.read.fetch import WINDOW_CHUNKS, fetch_chunk, plan_fetch, stream_payload
from storage_network.wire.manifest import Manifest
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import store_payload

from .conftest import K, M, payload, running_network

FAULT_ENV = {"NIXSHARD_TEST_FAULTS": "1"}
STALL = ("--fault", "stall=10")
HEDGE = 0.2
# Long enough that a reader which waited for a stalled node (stall=10) would
# have been served by it: a node that served nothing was not waited for.
PATIENT = 30.0


@pytest.fixture(scope="module")
def net6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Six nodes (k=4, m=2): each test stores its own payload and breaks one node."""
    with running_network(tmp_path_factory.mktemp("faults6"), 6, node_env=FAULT_ENV) as local:
        yield local


@pytest.fixture(scope="module")
def net8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Eight well-behaved nodes (k=4, m=2): rankings reach past the first n."""
    with running_network(tmp_path_factory.mktemp("faults8"), 8, node_env=FAULT_ENV) as local:
        yield local


def number(node: NodeInfo) -> int:
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


def client(local: LocalNetwork, hedge_after: float = DEFAULT_HEDGE_AFTER,
           scores: Scores | None = None) -> NetworkClient:
    assert local.network is not None
    return NetworkClient(local.network, timeout=PATIENT, hedge_after=hedge_after, scores=scores)


async def stored(local: LocalNetwork, seed: int, size: int = 200_000) -> tuple[bytes, Manifest]:
    data = payload(seed, size)
    async with client(local) as net:
        manifest, _ = await store_payload(net, local.publisher, [data])
    assert len(manifest.chunks) > 3
    return data, manifest


def unzstd(frames: list[bytes]) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(
        b"".join(frames))


async def read_back(net: NetworkClient, manifest: Manifest) -> bytes:
    plan = await plan_fetch(net, manifest)
    return unzstd([frame async for frame in stream_payload(net, plan)])


def homes(net: NetworkClient, manifest: Manifest, chunk: int) -> list[NodeInfo]:
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


# -- a stalled node --------------------------------------------------------------------------

async def test_stalled_node_is_hedged_past_and_then_avoided(net6: LocalNetwork) -> None:
    data, manifest = await stored(net6, 1)
    victim = victim_of(net6, manifest)
    with fault(net6, victim, *STALL):
        async with client(net6, hedge_after=HEDGE) as net:
            frames = []
            for chunk, ref in enumerate(manifest.chunks):
                # every shard on its home node, as placed: the victim holds data shard 0
                holders = {i: [node] for i, node in enumerate(homes(net, manifest, chunk))}
                frames.append(await fetch_chunk(net, manifest, ref, holders))
                if chunk == 0:
                    first = net.health.status(victim.id)
                    # asked first, outrun by a hedge, cancelled: never waited for
                    assert (first.shards_served, first.failures, first.slow_events) == (0, 0, 1)
                    assert first.standing == "demoted"
                    assert first.reason is not None and first.reason.startswith("hedged past")
            assert unzstd(frames) == data
            after = net.health.status(victim.id)
            # demoted, so asked last; whenever asked, never waited for
            assert (after.shards_served, after.failures) == (0, 0)
            others = [n.id for n in net.network.nodes if n.id != victim.id]
            served = sum(net.health.status(nid).shards_served for nid in others)
            assert served >= K * len(manifest.chunks)


async def test_stalled_node_is_left_out_of_plan_and_stream(net6: LocalNetwork) -> None:
    data, manifest = await stored(net6, 2)
    victim = victim_of(net6, manifest)
    with fault(net6, victim, *STALL):
        async with client(net6, hedge_after=HEDGE) as net:
            plan = await plan_fetch(net, manifest)
            # its has answer was abandoned once the others sufficed
            assert all(victim not in nodes for have in plan.holders for nodes in have.values())
            status = net.health.status(victim.id)
            assert (status.slow_events, status.failures) == (1, 0)
            assert status.reason == f"no has answer within {HEDGE:g} s (not waited for)"
            assert unzstd([frame async for frame in stream_payload(net, plan)]) == data
            assert net.health.status(victim.id).shards_served == 0


async def test_every_node_slow_still_reads_after_the_batches_are_abandoned(
        net6: LocalNetwork) -> None:
    """Every batch outlives ``hedge_after``: its shards are asked for again alone."""
    data, manifest = await stored(net6, 7)
    assert len(manifest.chunks) <= WINDOW_CHUNKS  # one window: one batch per node
    with contextlib.ExitStack() as stack:
        assert net6.network is not None
        for node in net6.network.nodes:
            stack.enter_context(fault(net6, node, "--fault", "stall=1"))
        async with client(net6, hedge_after=HEDGE) as net:
            plan = await plan_fetch(net, manifest)
            assert unzstd([frame async for frame in stream_payload(net, plan)]) == data
            statuses = [net.health.status(n.id) for n in net.network.nodes]
    assert all(s.slow_events >= 1 and s.failures == 0 for s in statuses)
    assert sum(s.shards_served for s in statuses) >= K * len(manifest.chunks)


# -- wrong bytes, short bytes, false claims --------------------------------------------------

@pytest.mark.parametrize("mode", ["flip", "short"])
async def test_node_serving_bad_bytes_is_benched(net6: LocalNetwork, mode: str) -> None:
    data, manifest = await stored(net6, 3 if mode == "flip" else 4)
    victim = victim_of(net6, manifest)
    with fault(net6, victim, "--fault", mode):
        async with client(net6, hedge_after=PATIENT) as net:
            assert await read_back(net, manifest) == data
            status = net.health.status(victim.id)
    assert status.benched and status.standing == "benched"
    assert status.reason is not None
    assert status.reason.startswith("served bad data for shard ")
    assert "does not match stripe root" in status.reason
    assert status.shards_served == 0 and status.failures >= 1
    # benched after its first bad shard: asked again only where chunks were already in flight
    assert status.failures <= len(manifest.chunks)


async def test_node_claiming_shards_it_lacks_is_benched(net6: LocalNetwork) -> None:
    data, manifest = await stored(net6, 5)
    victim = victim_of(net6, manifest)
    rank = await homes_lose_three(net6, manifest)
    with fault(net6, victim, "--fault", "lie-has"):
        async with client(net6, hedge_after=PATIENT) as net:
            plan = await plan_fetch(net, manifest)
            # it ranks first for chunk 0, so it is asked first for data shards 1..3
            assert all(plan.holders[0][i][0] == victim for i in (1, 2, 3))
            assert plan.holders[0][1] == [victim, rank[5]]
            assert await read_back(net, manifest) == data
            status = net.health.status(victim.id)
    assert status.benched
    assert status.reason is not None
    assert status.reason.startswith("claimed shard ")
    assert status.reason.endswith(" but did not serve it")
    assert status.failures >= 1


# -- shards past the first n nodes, audit scores -------------------------------------------

async def test_plan_finds_a_shard_past_the_first_n_nodes(net8: LocalNetwork) -> None:
    data = payload(6, 6000)
    async with client(net8) as net:
        manifest, _ = await store_payload(net, net8.publisher, [data])
        ref = manifest.chunks[0]
        rank = ranking(net.network.nodes, ref.chunk_id)
        spare = rank[-1]  # the last node of the ranking, past the first n
        assert rank.index(spare) >= K + M
        body = await net.nodes[rank[0].id].get_shard(shard_id(ref.root, 0), 1 << 20)
        assert body is not None
        assert await net.nodes[spare.id].put_shard(shard_id(ref.root, 0), body, net8.publisher)
        for i in range(3):  # the homes of shards 0, 1, 2 lose them: only 3 + the spare remain
            sid = shard_id(ref.root, i)
            (net8.root / rank[i].id / "shards" / sid[:2] / sid).unlink()

        plan = await plan_fetch(net, manifest)
        assert plan.holders[0] == {0: [spare], 3: [rank[3]], 4: [rank[4]], 5: [rank[5]]}
        assert await read_back(net, manifest) == data
        assert net.health.status(spare.id).shards_served >= 1


async def test_audit_scores_order_nodes_of_good_standing(net8: LocalNetwork) -> None:
    data, manifest = await stored(net8, 7, 100_000)
    ref = manifest.chunks[0]
    assert net8.network is not None
    placed = shard_nodes(net8.network.nodes, ref.chunk_id, manifest.n)
    scores = Scores()
    scores.update(placed[0].id, 0.0, {"held": 0})  # 0.5: below every other node
    async with client(net8, hedge_after=PATIENT, scores=scores) as net:
        holders = {i: [node] for i, node in enumerate(placed)}
        frame = await fetch_chunk(net, manifest, ref, holders)
        assert unzstd([frame]) == data[:ref.size]
        assert net.health.status(placed[0].id).shards_served == 0
        assert net.health.status(placed[0].id).score == 0.5
        served = [net.health.status(node.id).shards_served for node in placed[1:]]
        assert served == [1, 1, 1, 1, 0]  # data 1..3, then parity 4 before parity 5


# -- the health tracker on its own ----------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bench_doubles_on_repeat_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = NodeHealth(clock=clock)
    caplog.set_level("INFO", logger="nixshard.network")
    health.bad("n1", "served bad data for shard abc: x")
    health.bad("n1", "served bad data for shard def: y")  # same bench: reason updated only
    benched = [r.getMessage() for r in caplog.records if "benched" in r.getMessage()]
    assert benched == ["node n1 benched for 300 s: served bad data for shard abc: x"]
    status = health.status("n1")
    assert status.benched and status.out_seconds == 300.0 and status.failures == 2
    assert status.reason == "served bad data for shard def: y"
    clock.now += 301
    assert health.standing("n1") is Standing.GOOD
    health.bad("n1", "claimed shard ghi but did not serve it")
    assert health.status("n1").out_seconds == 600.0


def test_slow_and_failed_demote_and_rank_orders_by_standing_then_score() -> None:
    clock = Clock()
    scores = Scores()
    scores.update("low", 0.0, {})
    health = NodeHealth(scores, clock=clock)
    health.slow("slow", "hedged past after 0.5 s")
    health.failed("down", "connection refused")
    health.bad("bad", "served bad data")
    assert health.standing("slow") is health.standing("down") is Standing.DEMOTED
    ids = ["bad", "down", "good", "low", "slow"]
    assert sorted(ids, key=lambda i: (health.rank(i), i)) == ["good", "low", "down", "slow",
                                                               "bad"]
    assert health.status("slow").out_seconds == 30.0
    clock.now += 31
    assert health.standing("slow") is Standing.GOOD
    assert health.status("slow").slow_events == 1 and health.status("down").failures == 1
