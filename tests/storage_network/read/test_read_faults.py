"""Byzantine and slow nodes on the read path, against real node processes.

Faulty nodes run ``nixshard node --fault ...`` (TEST-ONLY, needs
``NIXSHARD_TEST_FAULTS=1``).  What the reader did is asserted through
``NetworkClient.health`` (shards served, failures, slow events, benching),
never through wall time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from nixshard.localnet import FAULT_ENV, LocalNetwork
from storage_network.nodes.health import NodeHealth, Standing
from storage_network.nodes.placement import ranking, shard_nodes
from storage_network.nodes.scores import Scores
from storage_network.read.chunk_fetch import fetch_chunk
from storage_network.read.plan import plan_fetch
from storage_network.read.stream import WINDOW_CHUNKS
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import store_payload
from tests.support.clock import Clock
from tests.support.zstd import unzstd

from ..conftest import K, M, payload, read_back, read_plan, running_network
from .read_faults import HEDGE, PATIENT, client, fault, homes, homes_lose_three, stored, victim_of

STALL = ("--fault", "stall=10")


@pytest.fixture(scope="module")
def net8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Eight well-behaved nodes (k=4, m=2): rankings reach past the first n."""
    with running_network(tmp_path_factory.mktemp("faults8"), 8, node_env=FAULT_ENV) as local:
        yield local


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
            assert unzstd(b"".join(frames)) == data
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
            assert await read_plan(net, plan) == data
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
            assert await read_plan(net, plan) == data
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
        assert unzstd(frame) == data[:ref.size]
        assert net.health.status(placed[0].id).shards_served == 0
        assert net.health.status(placed[0].id).score == 0.5
        served = [net.health.status(node.id).shards_served for node in placed[1:]]
        assert served == [1, 1, 1, 1, 0]  # data 1..3, then parity 4 before parity 5


# -- the health tracker on its own ----------------------------------------------------------

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
