"""Hostile nodes on the read path: malformed, endless and trickling answers, on real nodes.

The hostile node runs ``nixshard node --fault MODE`` (TEST-ONLY, see
:mod:`storage_node.faults`).  Every malformed answer counts as a failure of
its node (a malformed or oversized one benches it), the next candidate is
used, and the reader never raises anything but the read path's own errors.
What the reader did is asserted through ``NetworkClient.health``, never
through wall time.
"""

from __future__ import annotations

import time

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.errors import NotFoundError
from storage_network.nodes.placement import record_nodes
from storage_network.read.plan import plan_fetch
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.record import seal_record, seal_tombstone

from ..conftest import K, M, read_back, read_plan, record_key
from .read_faults import HEDGE, PATIENT, client, fault, stored, victim_of

# -- has and batch-get answers ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["deep-json", "endless"])
async def test_a_malformed_has_answer_benches_the_node_and_the_read_goes_on(
        net6: LocalNetwork, mode: str) -> None:
    data, manifest = await stored(net6, 60 if mode == "deep-json" else 61)
    victim = victim_of(net6, manifest)
    with fault(net6, victim, "--fault", mode):
        async with client(net6, hedge_after=PATIENT) as net:  # every has answer awaited
            plan = await plan_fetch(net, manifest)
            assert all(victim not in nodes for have in plan.holders for nodes in have.values())
            assert await read_plan(net, plan) == data
            status = net.health.status(victim.id)
    assert status.benched and status.shards_served == 0
    # deep JSON is refused by size here (100,000 bytes for a dozen ids), or else as not JSON
    assert status.reason is not None and "POST /shards/has: answer" in status.reason


async def test_an_endless_batch_answer_benches_the_node_and_the_read_goes_on(
        net6: LocalNetwork) -> None:
    data, manifest = await stored(net6, 62)
    victim = victim_of(net6, manifest)
    async with client(net6, hedge_after=PATIENT) as net:
        plan = await plan_fetch(net, manifest)  # the victim claims its shards
        assert all(victim in have[0] for have in plan.holders[:1])
        with fault(net6, victim, "--fault", "endless"):
            assert await read_plan(net, plan) == data
            status = net.health.status(victim.id)
    assert status.benched and status.shards_served == 0
    assert status.reason is not None and "POST /shards/batch-get: answer over" in status.reason


async def test_trickling_has_and_batch_answers_are_not_waited_for(net6: LocalNetwork) -> None:
    """A node sending its answers at 20 bytes a second is hedged past: slow, not failed."""
    data, manifest = await stored(net6, 63)
    victim = victim_of(net6, manifest)
    async with client(net6, hedge_after=PATIENT) as planner:
        plan = await plan_fetch(planner, manifest)  # made while the victim answers: it
    assert victim in plan.holders[0][0]  # holds data shard 0 of chunk 0, asked in a batch
    with fault(net6, victim, "--fault", "trickle=20"):
        async with client(net6, hedge_after=HEDGE) as net:
            assert await read_plan(net, plan) == data
            batch = net.health.status(victim.id)
        async with client(net6, hedge_after=HEDGE) as net:
            assert await read_back(net, manifest) == data  # its has answer trickles
            has = net.health.status(victim.id)
    assert batch.reason is not None and batch.reason.startswith("batch of ")
    assert has.reason == f"no has answer within {HEDGE:g} s (not waited for)"
    for status in (batch, has):
        assert status.failures == 0 and status.slow_events >= 1
        assert status.shards_served == 0 and status.standing == "demoted"


# -- record answers --------------------------------------------------------------------------

async def test_a_trickling_replica_does_not_hold_up_a_lookup(net6: LocalNetwork) -> None:
    """The first node of a key's window holds the only version, a tombstone, and sends
    it at 2 bytes a second: the lookup takes R other answers (a miss) instead of
    waiting for it until its deadline."""
    key = record_key(64)
    assert net6.network is not None
    first = record_nodes(net6.network.nodes, key)[0]
    tombstone = seal_tombstone(net6.publisher, key, "isa_l_rs_cauchy", K, M)
    async with client(net6) as net:
        assert await net.nodes[first.id].put_record(key, tombstone, net6.publisher) == 201
    with fault(net6, first, "--fault", "trickle=2"):
        async with client(net6, hedge_after=HEDGE) as net:
            with pytest.raises(NotFoundError, match=f"record {key}: absent on [34] of the "):
                await fetch_record(net, key)
            status = net.health.status(first.id)
    assert (status.failures, status.slow_events) == (0, 1)
    assert status.reason is not None and status.reason.startswith(f"record {key}: hedged past")


async def test_an_endless_record_answer_benches_the_node(net6: LocalNetwork) -> None:
    data, manifest = await stored(net6, 65)
    key = record_key(65)
    assert net6.network is not None
    window = record_nodes(net6.network.nodes, key)[:3 + M]
    envelope = seal_record(net6.publisher, key, b"meta", manifest, created=int(time.time()))
    async with client(net6) as net:
        for node in window[:3]:
            assert await net.nodes[node.id].put_record(key, envelope, net6.publisher) == 201
    with fault(net6, window[0], "--fault", "endless"):
        async with client(net6, hedge_after=PATIENT) as net:  # no hedge: its answer is read
            record = await fetch_record(net, key)
            status = net.health.status(window[0].id)
    assert record.metadata == b"meta" and record.manifest == manifest and data
    assert status.benched
    assert status.reason is not None and f"GET /records/{key}: answer over" in status.reason
