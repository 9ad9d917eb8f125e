"""The read path's Prometheus metrics (:mod:`storage_network.metrics`), against real nodes.

The metrics live in prometheus_client's global registry, shared with every
other test of the process: each test reads them before and after and
asserts the difference.  Nothing here depends on timing: the reader's
``hedge_after`` is long enough that no request is ever hedged.
"""

from __future__ import annotations

import pytest

from nixshard.localnet import LocalNetwork
from storage_network import metrics
from storage_network.config import NodeInfo
from storage_network.read.plan import plan_fetch
from storage_network.read.stream import WINDOW_CHUNKS, stream_payload
from tests.support.metrics import sample
from tests.support.zstd import unzstd

from ..conftest import K, read_back
from .read_faults import PATIENT, client, fault, homes_lose_three, number, stored, victim_of


@pytest.fixture(scope="module")
def net(net6: LocalNetwork) -> LocalNetwork:
    """Six nodes (k=4, m=2) that may be restarted with test faults."""
    return net6


class Snapshot:
    """The read-path samples at one moment, for every node of the network."""

    def __init__(self, nodes: list[NodeInfo]) -> None:
        self.chunks = sample("nixshard_chunks_fetched_total")
        self.degraded = sample("nixshard_degraded_chunks_total")
        self.decodes = sample("nixshard_decode_seconds_count")
        self.requests = {n.id: sample("nixshard_shard_fetch_seconds_count", node=n.id)
                         for n in nodes}
        self.asked = {n.id: sample("nixshard_shards_asked_total", node=n.id) for n in nodes}
        self.bytes = {n.id: sample("nixshard_shard_bytes_fetched_total", node=n.id)
                      for n in nodes}
        self.errors = {(n.id, kind): sample("nixshard_shard_fetch_errors_total", node=n.id,
                                            kind=kind)
                       for n in nodes for kind in ("error", "missing", "bad")}

    def minus(self, before: Snapshot) -> Snapshot:
        delta = object.__new__(Snapshot)
        delta.chunks = self.chunks - before.chunks
        delta.degraded = self.degraded - before.degraded
        delta.decodes = self.decodes - before.decodes
        delta.requests = {k: v - before.requests[k] for k, v in self.requests.items()}
        delta.asked = {k: v - before.asked[k] for k, v in self.asked.items()}
        delta.bytes = {k: v - before.bytes[k] for k, v in self.bytes.items()}
        delta.errors = {k: v - before.errors[k] for k, v in self.errors.items()}
        return delta


def nodes_of(local: LocalNetwork) -> list[NodeInfo]:
    assert local.network is not None
    return list(local.network.nodes)


def test_degraded_means_a_data_shard_was_not_used() -> None:
    assert not metrics.is_degraded({0, 1, 2, 3}, 4)
    assert not metrics.is_degraded({3, 1, 0, 2, 5}, 4)  # a parity extra, unused by decode
    assert metrics.is_degraded({0, 1, 2, 4}, 4)
    assert metrics.is_degraded({1, 2, 3, 4, 5}, 4)


async def test_healthy_read_counts_chunks_and_shards_and_nothing_degraded(
        net: LocalNetwork) -> None:
    data, manifest = await stored(net, 101, 150_000)
    before = Snapshot(nodes_of(net))
    async with client(net, hedge_after=PATIENT) as reader:
        assert await read_back(reader, manifest) == data
    delta = Snapshot(nodes_of(net)).minus(before)
    chunks = len(manifest.chunks)
    assert delta.chunks == chunks
    assert delta.decodes == chunks
    assert delta.degraded == 0
    # k data shards a chunk, each asked once, none failed
    assert sum(delta.asked.values()) == K * chunks
    # in one batch request per node and window of chunks
    windows = -(-chunks // WINDOW_CHUNKS)
    assert sum(delta.requests.values()) <= len(nodes_of(net)) * windows < K * chunks
    assert set(delta.errors.values()) == {0}
    # the data shards hold the whole compressed frame (plus proofs and padding)
    stored_bytes = sum(ref.stored_size for ref in manifest.chunks)
    assert stored_bytes <= sum(delta.bytes.values()) < 2 * stored_bytes


async def test_node_serving_flipped_bytes_counts_bad_shards_and_degraded_chunks(
        net: LocalNetwork) -> None:
    data, manifest = await stored(net, 102, 150_000)
    victim = victim_of(net, manifest)
    with fault(net, victim, "--fault", "flip"):
        before = Snapshot(nodes_of(net))
        async with client(net, hedge_after=PATIENT) as reader:
            assert await read_back(reader, manifest) == data
        delta = Snapshot(nodes_of(net)).minus(before)
    assert delta.chunks == len(manifest.chunks)
    assert delta.errors[(victim.id, "bad")] >= 1
    # its shard 0 of chunk 0 has no other holder: a parity shard stood in
    assert delta.degraded >= 1
    assert delta.degraded <= delta.chunks
    # a bad body was still received and timed
    assert delta.requests[victim.id] >= 1 and delta.bytes[victim.id] > 0
    others = [(n.id, kind) for n in nodes_of(net) if n.id != victim.id
              for kind in ("error", "missing", "bad")]
    assert all(delta.errors[key] == 0 for key in others)


async def test_node_killed_after_the_plan_counts_errors_and_degraded_chunks(
        net: LocalNetwork) -> None:
    data, manifest = await stored(net, 103, 150_000)
    victim = victim_of(net, manifest)
    try:
        async with client(net, hedge_after=PATIENT) as reader:
            plan = await plan_fetch(reader, manifest)
            assert victim in plan.holders[0][0]
            net.nodes[number(victim) - 1].kill()
            before = Snapshot(nodes_of(net))
            frames = [frame async for frame in stream_payload(reader, plan)]
            delta = Snapshot(nodes_of(net)).minus(before)
    finally:
        net.restart_node(number(victim))
    assert unzstd(b"".join(frames)) == data
    assert delta.chunks == len(manifest.chunks)
    assert delta.errors[(victim.id, "error")] >= 1
    assert delta.errors[(victim.id, "bad")] == delta.errors[(victim.id, "missing")] == 0
    assert delta.degraded >= 1
    assert delta.requests[victim.id] == delta.errors[(victim.id, "error")]
    assert delta.bytes[victim.id] == 0


async def test_node_claiming_shards_it_lacks_counts_missing(net: LocalNetwork) -> None:
    data, manifest = await stored(net, 104, 150_000)
    victim = victim_of(net, manifest)
    await homes_lose_three(net, manifest)
    with fault(net, victim, "--fault", "lie-has"):
        before = Snapshot(nodes_of(net))
        async with client(net, hedge_after=PATIENT) as reader:
            assert await read_back(reader, manifest) == data
        delta = Snapshot(nodes_of(net)).minus(before)
    assert delta.errors[(victim.id, "missing")] >= 1
    assert delta.errors[(victim.id, "bad")] == delta.errors[(victim.id, "error")] == 0
    assert delta.chunks == len(manifest.chunks)
