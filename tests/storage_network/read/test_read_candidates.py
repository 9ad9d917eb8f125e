"""A reader keeps every holder of a chunk as a candidate for the whole transfer.

Real node processes (``nixshard node``, test faults where a node must be
slow).  A transfer may fail after it started only when some chunk has fewer
than k reachable shards at that moment: holders whose ``has`` answer came
late, and nodes past the first n of a ranking, are candidates too.
"""

from __future__ import annotations

from pathlib import Path

from nixshard.localnet import FAULT_ENV
from storage_network.nodes.placement import ranking
from storage_network.read.plan import plan_fetch
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import store_payload

from ..conftest import K, M, payload, read_plan, running_network
from .read_faults import HEDGE, client, fault, number, stored

LATE_HAS = ("--fault", "slow-has=3")
"""A node whose ``has`` answers come 3 s late: far past ``HEDGE``, so a plan never waits."""


async def test_late_has_answers_stay_candidates_when_a_holder_dies(tmp_path: Path) -> None:
    """Two nodes answer ``has`` late, then one of the others dies after the plan:
    the old reader had dropped the late ones and sent a 200 with no byte."""
    with running_network(tmp_path / "net", 6, node_env=FAULT_ENV) as local:
        data, manifest = await stored(local, 21)
        assert local.network is not None
        late, victim = local.network.nodes[:2], local.network.nodes[2]
        with fault(local, late[0], *LATE_HAS), fault(local, late[1], *LATE_HAS):
            async with client(local, hedge_after=HEDGE) as net:
                plan = await plan_fetch(net, manifest)
                # 6 nodes, n = 6: every node holds a shard of every chunk
                planned = {node.id for have in plan.holders for nodes in have.values()
                           for node in nodes}
                assert planned == {n.id for n in net.network.nodes} - {n.id for n in late}
                local.nodes[number(victim) - 1].kill()
                assert await read_plan(net, plan) == data
                for node in late:
                    status = net.health.status(node.id)
                    assert status.failures == 0 and status.shards_served >= 1
                assert net.health.status(victim.id).failures >= 1


async def test_a_spare_past_the_first_n_is_found_when_homes_die_mid_transfer(
        tmp_path: Path) -> None:
    """The plan found k shards on the homes and asked no further; three homes die
    (m + 1) but a spare past the first n holds a copy of a lost shard: the chunk
    still has k reachable shards, so the transfer goes on."""
    with running_network(tmp_path / "net", 8) as local:
        data = payload(22, 6000)  # one chunk
        async with client(local) as net:
            manifest, _ = await store_payload(net, local.publisher, [data])
            (ref,) = manifest.chunks
            rank = ranking(net.network.nodes, ref.chunk_id)
            homes, spare = rank[:K + M], rank[-1]
            body = await net.nodes[homes[1].id].get_shard(shard_id(ref.root, 1), 1 << 20)
            assert body is not None
            assert await net.nodes[spare.id].put_shard(shard_id(ref.root, 1), body,
                                                       local.publisher)
            plan = await plan_fetch(net, manifest)
            assert plan.holders[0] == {i: [node] for i, node in enumerate(homes)}
            for home in homes[1:4]:
                local.nodes[number(home) - 1].kill()
            assert await read_plan(net, plan) == data
            assert net.health.status(spare.id).shards_served == 1
