"""The client's answer budget: hostile nodes streaming endless answers cannot fill its memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from nixshard.localnet import FAULT_ENV, NodeProcess, new_publisher
from storage_network.config import NodeInfo
from storage_network.errors import NodeAnswerError, NodeTimeoutError
from storage_network.nodes.http import NodeClient
from storage_network.nodes.limits import AnswerBudget, Deadlines

MiB = 1 << 20
KEY = "0123456789abcdfghijklmnpqrsvwxyz"


@pytest.fixture(scope="module")
def endless_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A real node whose record answers stream bytes forever (TEST-ONLY fault mode)."""
    public = new_publisher("test-publisher-1")[0].public.text()
    with NodeProcess(Path(tmp_path_factory.mktemp("endless")) / "data", [public],
                     extra_args=["--fault", "endless"], env=FAULT_ENV) as node:
        yield node


async def test_reserve_waits_for_room_and_release_makes_it() -> None:
    budget = AnswerBudget(total=2 * MiB, free=0)
    await budget.reserve(2 * MiB)
    waiter = asyncio.create_task(budget.reserve(MiB))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await budget.release(MiB)
    await asyncio.wait_for(waiter, 10)
    assert budget.used == 2 * MiB


async def endless_record_reads(node_process: NodeProcess, budget: AnswerBudget
                               ) -> tuple[list[BaseException | bytes | None], int]:
    """16 concurrent record reads from ``node_process``; their outcomes and the peak of
    Python's traced memory meanwhile (bytes)."""
    info = NodeInfo(node_process.node_id, node_process.url)
    async with aiohttp.ClientSession() as session:
        node = NodeClient(info, session, deadlines=Deadlines.within(3.0), slots=16,
                          budget=budget)
        tracemalloc.start()
        try:
            outcomes = await asyncio.gather(*(node.get_record(KEY) for _ in range(16)),
                                            return_exceptions=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return outcomes, peak


async def test_endless_answers_stay_within_the_budget(endless_node: NodeProcess) -> None:
    """16 concurrent record reads from a node streaming endlessly: each may hold 256 KiB
    (a record's free allowance), all together 8 MiB more; without the budget each would
    grow to the 64 MiB record cap."""
    budget = AnswerBudget(total=8 * MiB, free=MiB)
    outcomes, peak = await endless_record_reads(endless_node, budget)
    assert all(isinstance(o, NodeAnswerError | NodeTimeoutError) for o in outcomes), outcomes
    waited = [o for o in outcomes if isinstance(o, NodeTimeoutError) and "budget" in str(o)]
    assert waited and all(o.blame == "client" for o in waited)  # not held against the node
    # allowances + budget + aiohttp's socket buffers; without the budget: 16 x 64 MiB
    assert peak < 64 * MiB, peak
    assert budget.used == 0


async def test_a_record_answer_holds_less_than_other_answers_unreserved(
        endless_node: NodeProcess) -> None:
    """Record reads (asked of a whole window on every narinfo miss) hold at most
    RECORD_FREE_BYTES each without reserving, not the budget's 4 MiB: 16 endless ones
    hold 4 MiB besides the budget's 8 MiB (64 MiB + 8 MiB with 4 MiB each)."""
    budget = AnswerBudget(total=8 * MiB)
    assert budget.free == 4 * MiB
    outcomes, peak = await endless_record_reads(endless_node, budget)
    assert all(isinstance(o, NodeAnswerError | NodeTimeoutError) for o in outcomes), outcomes
    # measured about 25 MiB (allowances, budget, buffers); with 4 MiB each about 90 MiB
    assert peak < 48 * MiB, peak
    assert budget.used == 0
