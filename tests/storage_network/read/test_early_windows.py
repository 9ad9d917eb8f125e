"""A whole-payload read asks its first windows of the chunks' homes while ``has`` runs.

:func:`storage_network.read.stream.plan_stream` (real node processes; test
faults where ``has`` must be slow).  Distant nodes then start sending a round
trip earlier; a home that lost its shard costs that chunk a detour, not the read.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from nixshard.localnet import FAULT_ENV
from storage_network.read.stream import RAMP_WINDOWS, WINDOW_CHUNKS, plan_stream
from storage_network.wire.stripe import shard_id

from ..conftest import read_plan, running_network
from .read_faults import client, fault, homes, stored

LATE_HAS = ("--fault", "slow-has=3")


async def test_first_windows_come_from_the_homes_before_any_has_answer(
        tmp_path: Path) -> None:
    """Every node answers ``has`` 3 s late: by the time the plan is made, the first
    windows were already fetched from the homes (before, nothing was asked of a
    node until every ``has`` answer was in)."""
    with running_network(tmp_path / "net", 6, node_env=FAULT_ENV) as local:
        data, manifest = await stored(local, 31, size=1_500_000)
        assert len(manifest.chunks) > RAMP_WINDOWS * WINDOW_CHUNKS
        assert local.network is not None
        with ExitStack() as stack:
            for node in local.network.nodes:
                stack.enter_context(fault(local, node, *LATE_HAS))
            async with client(local) as net:
                plan = await plan_stream(net, manifest)
                assert len(plan.early) == RAMP_WINDOWS
                assert all(task.done() and not task.cancelled() for task in plan.early)
                assert [len(task.result()) for task in plan.early] == [WINDOW_CHUNKS] * 2
                assert await read_plan(net, plan) == data


async def test_a_home_without_its_shard_costs_its_chunk_a_detour(tmp_path: Path) -> None:
    """Chunk 0's homes of shards 0 and 1 lost them: the early fetch of that chunk
    goes on to the other homes (parity) and the payload is whole."""
    with running_network(tmp_path / "net", 6) as local:
        data, manifest = await stored(local, 32)
        ref = manifest.chunks[0]
        async with client(local) as net:
            rank = homes(net, manifest, 0)
            for index in (0, 1):
                sid = shard_id(ref.root, index)
                (local.root / rank[index].id / "shards" / sid[:2] / sid).unlink()
            plan = await plan_stream(net, manifest)
            assert plan.early
            assert await read_plan(net, plan) == data
            assert {rank[0].id, rank[1].id}.isdisjoint(
                node.id for nodes in plan.holders[0].values() for node in nodes)

